//! A byte radix tree that finds every stored key which is a prefix of a
//! lookup key, in one walk along the lookup key.
//!
//! It serves two indexes: path prefixes of the routes of a virtual host, and
//! wildcard domains (`*.example.com` stored reversed, `example.*` forward).
//! A walk costs the length of the lookup key, whatever the number of keys
//! stored, which is the point: a table of 10,000 prefixes is searched as fast
//! as one of ten. Nodes live in one `Vec` and edges are sorted by their first
//! byte, so a table is a few allocations per key and no pointer chasing
//! through boxes.

#[derive(Debug)]
struct Node<V> {
    /// The bytes on the edge into this node.
    label: Box<[u8]>,
    value: Option<V>,
    /// Children by the first byte of their label, sorted.
    children: Vec<(u8, u32)>,
}

#[derive(Debug)]
pub struct Trie<V> {
    nodes: Vec<Node<V>>,
}

impl<V> Default for Trie<V> {
    /// An empty trie allocates nothing: most virtual hosts have no prefix.
    fn default() -> Self {
        Trie { nodes: Vec::new() }
    }
}

impl<V> Trie<V> {
    /// The value stored under `key`, created with `make` if there is none.
    pub fn entry(&mut self, key: &[u8], make: impl FnOnce() -> V) -> &mut V {
        if self.nodes.is_empty() {
            self.push(&[], None);
        }
        let mut node = 0usize;
        let mut rest = key;
        while !rest.is_empty() {
            let first = rest[0];
            let slot = self.nodes[node].children.binary_search_by_key(&first, |&(b, _)| b);
            let child = match slot {
                Err(at) => {
                    let id = self.push(rest, None);
                    self.nodes[node].children.insert(at, (first, id));
                    node = id as usize;
                    break;
                }
                Ok(at) => self.nodes[node].children[at].1 as usize,
            };
            let label = &self.nodes[child].label;
            let common = label.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if common < label.len() {
                // Split the edge: a new node for the shared part, the old
                // child below it with what is left of its label.
                let (head, tail) = label.split_at(common);
                let (head, tail): (Box<[u8]>, Box<[u8]>) = (head.into(), tail.into());
                let mid = self.push(&head, None);
                self.nodes[child].label = tail;
                let tail_first = self.nodes[child].label[0];
                self.nodes[mid as usize].children.push((tail_first, child as u32));
                let at = slot.unwrap_or_else(|e| e);
                self.nodes[node].children[at].1 = mid;
                node = mid as usize;
            } else {
                node = child;
            }
            rest = &rest[common..];
        }
        self.nodes[node].value.get_or_insert_with(make)
    }

    fn push(&mut self, label: &[u8], value: Option<V>) -> u32 {
        self.nodes.push(Node { label: label.into(), value, children: Vec::new() });
        (self.nodes.len() - 1) as u32
    }

    /// Calls `f(value, len)` for every stored key that is a prefix of `key`,
    /// shortest first; `len` is the stored key's length.
    pub fn walk<'s>(&'s self, key: &[u8], mut f: impl FnMut(&'s V, usize)) {
        let Some(mut node) = self.nodes.first() else { return };
        let mut at = 0;
        loop {
            if let Some(v) = &node.value {
                f(v, at);
            }
            let Some(&first) = key.get(at) else { return };
            let Ok(slot) = node.children.binary_search_by_key(&first, |&(b, _)| b) else { return };
            let child = &self.nodes[node.children[slot].1 as usize];
            if !key[at..].starts_with(&child.label) {
                return;
            }
            at += child.label.len();
            node = child;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1 && self.nodes.first().is_none_or(|n| n.value.is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(t: &Trie<u32>, key: &str) -> Vec<(u32, usize)> {
        let mut out = Vec::new();
        t.walk(key.as_bytes(), |v, len| out.push((*v, len)));
        out
    }

    #[test]
    fn finds_every_stored_prefix_shortest_first() {
        let mut t = Trie::default();
        for (i, k) in ["/api/", "/a", "/api/v1/", "/b", "/api/v2", ""].iter().enumerate() {
            *t.entry(k.as_bytes(), || 0) = i as u32;
        }
        assert_eq!(found(&t, "/api/v1/users"), vec![(5, 0), (1, 2), (0, 5), (2, 8)]);
        assert_eq!(found(&t, "/api/v2"), vec![(5, 0), (1, 2), (0, 5), (4, 7)]);
        assert_eq!(found(&t, "/ap"), vec![(5, 0), (1, 2)]);
        assert_eq!(found(&t, "/c"), vec![(5, 0)]);
        assert_eq!(found(&t, ""), vec![(5, 0)]);
        // The same key again finds its entry.
        assert_eq!(*t.entry(b"/api/", || 9), 0);
    }

    #[test]
    fn agrees_with_starts_with_on_random_keys() {
        let mut rng = fastrand::Rng::with_seed(7);
        let word = |rng: &mut fastrand::Rng| -> String {
            (0..rng.usize(0..6)).map(|_| ['a', 'b', '/'][rng.usize(0..3)]).collect()
        };
        for _ in 0..200 {
            let keys: Vec<String> = (0..rng.usize(0..20)).map(|_| word(&mut rng)).collect();
            let mut t = Trie::default();
            for (i, k) in keys.iter().enumerate() {
                t.entry(k.as_bytes(), || i as u32);
            }
            for _ in 0..20 {
                let probe = word(&mut rng) + &word(&mut rng);
                let mut want: Vec<(u32, usize)> = Vec::new();
                for (i, k) in keys.iter().enumerate() {
                    if probe.starts_with(k.as_str()) && !want.iter().any(|&(_, l)| l == k.len()) {
                        want.push((i as u32, k.len()));
                    }
                }
                want.sort_by_key(|&(_, l)| l);
                assert_eq!(found(&t, &probe), want, "keys {keys:?} probe {probe:?}");
            }
        }
    }
}
