//! Maglev consistent hashing (Eisenbud et al., NSDI 2016).
//!
//! Each host fills a lookup table of prime size in the order of its own
//! permutation (offset and skip from two hashes of its address); a key's hash
//! indexes the table. Adding or removing a host moves about 1/N of the keys.
//! When the chosen host is ineligible the lookup probes the following slots,
//! so a key sticks to a stable second choice instead of being rehashed.
//! Hashes are SipHash-2-4 with MOSN's key, so keys land where MOSN puts them
//! only if the tables match; the table size is MOSN's small default.

use std::hash::Hasher;
use std::rc::Rc;

use siphasher::sip::SipHasher24;

use super::{Candidates, LbContext};
use crate::host::Host;

pub const DEFAULT_TABLE_SIZE: usize = 65537;
const SIP_KEY: u64 = 0xbeef_cafe_babe_dead;

fn sip(bytes: &[u8], seed: u64) -> u64 {
    let mut h = SipHasher24::new_with_keys(SIP_KEY, seed);
    h.write(bytes);
    h.finish()
}

pub struct Maglev {
    table: Vec<u32>,
}

impl Maglev {
    /// Builds the table; `size` must be prime and larger than the host count.
    pub fn new(hosts: &[Rc<Host>], size: usize) -> Maglev {
        if hosts.is_empty() {
            return Maglev { table: Vec::new() };
        }
        let m = size as u64;
        let perms: Vec<(u64, u64)> = hosts
            .iter()
            .map(|h| {
                let name = h.addr.to_string();
                let offset = sip(name.as_bytes(), 0) % m;
                let skip = sip(name.as_bytes(), 1) % (m - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; hosts.len()];
        let mut table = vec![u32::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perms.iter().enumerate() {
                let mut slot = (offset + next[i] * skip) % m;
                while table[slot as usize] != u32::MAX {
                    next[i] += 1;
                    slot = (offset + next[i] * skip) % m;
                }
                table[slot as usize] = i as u32;
                next[i] += 1;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Maglev { table }
    }

    pub fn choose(&self, candidates: &Candidates, ctx: &LbContext, key: &[u8]) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        let start = (sip(key, 2) % self.table.len() as u64) as usize;
        // Probing at most a full table visits every host; in practice a few
        // slots, about one over the share of hosts that are candidates.
        (0..self.table.len())
            .map(|k| self.table[(start + k) % self.table.len()] as usize)
            .find(|&i| candidates.contains(i) && !ctx.tried(i))
    }

    #[cfg(test)]
    pub fn lookup(&self, key: &[u8]) -> usize {
        self.table[(sip(key, 2) % self.table.len() as u64) as usize] as usize
    }
}
