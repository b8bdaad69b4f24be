//! Header maps kept by the worker between requests. An h2c request through
//! the raw HTTP/1.1 path used two `HeaderMap`s (the client's fields, the
//! upstream's answer) of two allocations each; a map given back is cleared,
//! which keeps its room, and the next request's decoder or response parser
//! takes it.

use http::HeaderMap;

use crate::network::spares::{thread_spares, Spares};

/// Maps kept per worker (the unused are let go within two seconds,
/// `network::spares`).
const KEEP: usize = 1024;
/// The most fields a kept map may have room for: one grown by a large head
/// is let go.
const MAX_KEPT: usize = 64;

thread_spares! { static MAPS: HeaderMap = KEEP; }

/// An empty map, with room if a kept one is there.
pub fn take() -> HeaderMap {
    MAPS.with(Spares::take).unwrap_or_default()
}

/// Takes back a map whose fields are no longer needed.
pub fn give(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > MAX_KEPT {
        return;
    }
    map.clear();
    // `try_with`: a map dropped while the thread exits is freed.
    let _ = MAPS.try_with(|m| m.give(map));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_comes_back_empty_with_its_room() {
        let mut m = take();
        m.insert("x-a", "1".parse().unwrap());
        m.insert("x-b", "2".parse().unwrap());
        let room = m.capacity();
        give(m);
        let again = take();
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
        // A map with no room is not worth keeping.
        give(HeaderMap::new());
        assert_eq!(take().capacity(), 0);
    }
}
