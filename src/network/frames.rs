//! Splitting a byte stream into whole frames, and gathering large ones.
//!
//! Most frames arrive whole within one read. They are handed on as slices of
//! the worker's read buffer ([`Frame::Read`]) and copied once, id patched on
//! the way, into the output buffer of the connection they go to.
//!
//! A frame that arrives in pieces leaves its unfinished tail here. A large
//! one, whose header says it is at least [`GATHER_MIN`] bytes long (and at
//! most [`GATHER_MAX`]), is gathered into a buffer of exactly its own length
//! instead. Later reads fill
//! that buffer straight from the socket ([`FrameReader::space`]), without
//! passing through the read buffer. The whole frame is then handed on as it is
//! ([`Frame::Owned`]), and the connection it goes to writes that buffer
//! rather than a copy of it. A 256 KiB frame thus costs one copy of its first
//! read and no other, and its memory is held once, from its first bytes until
//! its last is written.

use super::spares::{thread_spares, Spares};
use std::ops::Deref;

use bytes::buf::Limit;
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::{Codec, CodecError, FrameInfo, Parsed};

/// Frames at least this long are gathered into a buffer of their own when
/// they do not arrive whole. Smaller ones grow the reader's tail, and are
/// copied into the output buffer they go to. Equal to the size beyond which
/// a connection's output buffer is freed once written (`conn.rs`), so a
/// frame that would need a fresh output buffer anyway brings its own.
pub const GATHER_MIN: usize = 16 * 1024;

/// Frames longer than this grow the reader's tail as their bytes arrive
/// instead, copied as small ones are: a buffer of the frame's length is taken
/// on the word of its header, before the bytes are in, so a peer that sends
/// headers alone must not make the proxy take more than this per connection.
pub const GATHER_MAX: usize = 1 << 20;

/// Bytes added at a time to a frame begun in an earlier read while its header
/// is not all in (more than any protocol's fixed header here).
const HEADER_PROBE: usize = 64;

/// Buffers of gathered frames that were written out, kept by the worker for
/// the next large frames: glibc gives such blocks back to the kernel when they
/// are freed (its arenas `madvise` the freed top away, about 200 times a
/// second at 4,000 256 KiB requests a second), and each reuse then faults
/// every page in again; that cost a third more CPU per request in some runs.
/// At most this many are kept per worker, none larger than [`GATHER_MAX`]:
/// a worker keeps at most 8 MiB after a burst of large frames, and lets it go
/// once the burst is over (the worker's trimmer, `network::spares`).
const SPARE_MAX: usize = 8;

thread_spares! { static SPARE: BytesMut = SPARE_MAX; }

/// An empty buffer with room for `len` bytes, a kept one if there is one.
fn buffer_for(len: usize) -> BytesMut {
    let spare = SPARE.with(Spares::take);
    match spare {
        Some(mut buf) => {
            buf.reserve(len);
            buf
        }
        None => BytesMut::with_capacity(len),
    }
}

/// Takes back the buffer of a gathered frame that has been written (what is
/// left of it: it may have gone out in pieces), to gather a later one into,
/// if nothing else holds it and it is of a size worth keeping.
pub fn recycle(buf: Bytes) {
    let Ok(mut buf) = buf.try_into_mut() else {
        return;
    };
    buf.clear();
    // Room at its front, where written bytes were, comes back with the
    // `reserve` in `buffer_for`; the capacity seen here may be less.
    if buf.capacity() > GATHER_MAX {
        return;
    }
    SPARE.with(|s| s.give(buf));
}

/// A whole frame, as a reader hands it on.
#[derive(Debug)]
pub enum Frame<'a> {
    /// A slice of the buffer it was read into: copy it to keep it.
    Read(&'a [u8]),
    /// A frame in a buffer of its own (a large frame gathered across reads,
    /// or one a filter rewrote): a large one is handed on whole.
    Owned(BytesMut),
}

impl Frame<'_> {
    /// The frame as a buffer to keep: an owned one without a copy.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Frame::Read(b) => Bytes::copy_from_slice(b),
            Frame::Owned(b) => b.freeze(),
        }
    }
}

impl Deref for Frame<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Frame::Read(b) => b,
            Frame::Owned(b) => b,
        }
    }
}

/// Splits a byte stream into whole frames. Holds only the unfinished tail, or
/// the large frame being gathered.
#[derive(Default)]
pub struct FrameReader {
    tail: BytesMut,
    /// The length of the frame being gathered in `tail` (0: none); `tail`
    /// was allocated for exactly that.
    gather: usize,
}

impl FrameReader {
    /// Feeds newly read bytes; calls `on_frame` for every whole frame.
    ///
    /// A frame begun in an earlier read is finished with the bytes it lacks,
    /// taken from the front of `data`; the frames after it are split where
    /// they were read, as in a read that began on a frame boundary. Only the
    /// unfinished frame at the end is copied (appending the whole read to the
    /// tail cost a copy of every byte that followed a split frame: at full
    /// load the upstream connection's reads end mid-frame most of the time).
    pub fn feed(
        &mut self,
        mut data: &[u8],
        codec: &dyn Codec,
        max_frame: usize,
        mut on_frame: impl FnMut(Frame<'_>, FrameInfo),
    ) -> Result<(), CodecError> {
        loop {
            if self.gather > 0 {
                let take = (self.gather - self.tail.len()).min(data.len());
                self.tail.extend_from_slice(&data[..take]);
                data = &data[take..];
                self.finish_gather(codec, max_frame, &mut on_frame)?;
                if data.is_empty() {
                    return Ok(());
                }
            }
            if self.tail.is_empty() {
                let (used, partial) = split_frames(data, codec, max_frame, &mut on_frame)?;
                let rest = &data[used..];
                match partial {
                    Some(len) if (GATHER_MIN..=GATHER_MAX).contains(&len) => self.start_gather(rest, len),
                    _ if !rest.is_empty() => self.tail.extend_from_slice(rest),
                    // Give the memory back: idle connections hold no read buffer.
                    _ => self.tail = BytesMut::new(),
                }
                return Ok(());
            }
            match codec.parse(&self.tail, max_frame)? {
                Parsed::Frame(info) => {
                    on_frame(Frame::Read(&self.tail[..info.len]), info);
                    self.tail.advance(info.len);
                    if self.tail.is_empty() && data.is_empty() {
                        self.tail = BytesMut::new();
                        return Ok(());
                    }
                }
                Parsed::Partial(Some(len)) if (GATHER_MIN..=GATHER_MAX).contains(&len) => {
                    let begun = std::mem::take(&mut self.tail);
                    self.start_gather(&begun, len);
                }
                Parsed::Partial(len) => {
                    if data.is_empty() {
                        return Ok(());
                    }
                    // What the frame lacks, or, while its header is not all
                    // in, a piece that doubles what is held (a codec that
                    // cannot tell a length early costs no more than a copy).
                    let lacks = match len {
                        None => self.tail.len().max(HEADER_PROBE),
                        Some(len) if len > self.tail.len() => len - self.tail.len(),
                        // A frame said to be no longer than what is held of it.
                        Some(_) => return Err(CodecError::BadHeaders),
                    };
                    let take = lacks.min(data.len());
                    self.tail.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
            }
        }
    }

    /// Where the next read should go when a large frame is being gathered:
    /// the rest of its buffer, exactly what the frame still lacks. After
    /// reading into it, call [`FrameReader::filled`].
    pub fn space(&mut self) -> Option<Limit<&mut BytesMut>> {
        let lacks = self.gather.checked_sub(self.tail.len()).filter(|&n| n > 0)?;
        Some((&mut self.tail).limit(lacks))
    }

    /// Bytes were read into [`FrameReader::space`]: hands the frame on if
    /// it is whole.
    pub fn filled(
        &mut self,
        codec: &dyn Codec,
        max_frame: usize,
        mut on_frame: impl FnMut(Frame<'_>, FrameInfo),
    ) -> Result<(), CodecError> {
        self.finish_gather(codec, max_frame, &mut on_frame)
    }

    /// True when part of a frame has been read.
    pub fn has_partial(&self) -> bool {
        !self.tail.is_empty()
    }

    fn start_gather(&mut self, first: &[u8], len: usize) {
        let mut buf = buffer_for(len);
        buf.extend_from_slice(first);
        self.tail = buf;
        self.gather = len;
    }

    fn finish_gather(
        &mut self,
        codec: &dyn Codec,
        max_frame: usize,
        on_frame: &mut impl FnMut(Frame<'_>, FrameInfo),
    ) -> Result<(), CodecError> {
        if self.tail.len() < self.gather {
            return Ok(());
        }
        let frame = std::mem::take(&mut self.tail);
        let len = std::mem::replace(&mut self.gather, 0);
        match codec.parse(&frame, max_frame)? {
            Parsed::Frame(info) if info.len == len => {
                on_frame(Frame::Owned(frame), info);
                Ok(())
            }
            // The header said `len` when it was first read; a codec that now
            // reads it otherwise cannot be trusted with the stream.
            _ => Err(CodecError::BadHeaders),
        }
    }
}

/// Hands on the whole frames at the start of `buf`. Returns how many bytes
/// they took, and the length of the partial frame after them if its header
/// is in.
fn split_frames(
    buf: &[u8],
    codec: &dyn Codec,
    max_frame: usize,
    on_frame: &mut impl FnMut(Frame<'_>, FrameInfo),
) -> Result<(usize, Option<usize>), CodecError> {
    let mut at = 0;
    while at < buf.len() {
        match codec.parse(&buf[at..], max_frame)? {
            Parsed::Frame(info) => {
                on_frame(Frame::Read(&buf[at..at + info.len]), info);
                at += info.len;
            }
            Parsed::Partial(len) => return Ok((at, len)),
        }
    }
    Ok((at, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::bolt::{RequestBuilder, BOLT_V1};

    fn request(id: u32, service: &str, body: &str) -> Vec<u8> {
        RequestBuilder::new(id, service, body.as_bytes()).encode()
    }

    /// Feeds `stream` cut at `cuts`, reading into the gather space whenever
    /// the reader offers it (as the connection loop does). Returns the ids
    /// and lengths of the frames, and whether each came gathered.
    fn read(stream: &[u8], cuts: &[usize]) -> Vec<(u64, usize, bool)> {
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        let mut on_frame = |f: Frame<'_>, i: FrameInfo| {
            assert_eq!(f.len(), i.len);
            got.push((i.id, i.len, matches!(f, Frame::Owned(_))));
        };
        let mut at = 0;
        let mut bounds = cuts.to_vec();
        bounds.push(stream.len());
        for end in bounds {
            while at < end {
                if let Some(mut space) = reader.space() {
                    let n = space.remaining_mut().min(end - at);
                    space.put_slice(&stream[at..at + n]);
                    at += n;
                    reader.filled(&BOLT_V1, 1 << 24, &mut on_frame).unwrap();
                } else {
                    reader.feed(&stream[at..end], &BOLT_V1, 1 << 24, &mut on_frame).unwrap();
                    at = end;
                }
            }
        }
        assert!(!reader.has_partial());
        got
    }

    #[test]
    fn a_large_frame_is_gathered_into_one_buffer_of_its_size() {
        let big = request(7, "svc", &"x".repeat(256 * 1024));
        let small = request(8, "svc", "y");
        let mut stream = small.clone();
        stream.extend_from_slice(&big);
        stream.extend_from_slice(&small);
        let n = stream.len();
        // The header arrives with the first read, then the body in pieces,
        // the last one carrying the next frame too.
        for cuts in [vec![100, 70_000, 200_000], vec![small.len() + 5, 65_536], vec![n - small.len() - 3]] {
            let got = read(&stream, &cuts);
            assert_eq!(got, vec![(8, small.len(), false), (7, big.len(), true), (8, small.len(), false)], "{cuts:?}");
        }
    }

    #[test]
    fn written_buffers_are_kept_for_the_next_large_frames() {
        let mut buf = BytesMut::with_capacity(2 * GATHER_MIN);
        buf.extend_from_slice(&[7; GATHER_MIN]);
        let at = buf.as_ptr();
        recycle(buf.freeze());
        let again = buffer_for(GATHER_MIN + 1);
        assert_eq!((again.as_ptr(), again.len()), (at, 0), "the same block, emptied");
        // One still held elsewhere, or larger than any gathered frame, is not kept.
        let shared = Bytes::from(vec![0; GATHER_MIN]);
        let held = shared.clone();
        recycle(shared);
        recycle(Bytes::from(vec![0; GATHER_MAX + 1]));
        assert!(SPARE.with(Spares::take).is_none(), "nothing was kept");
        drop(held);
        // One written in pieces is kept whole: the room its written bytes
        // took comes back.
        let mut buf = BytesMut::with_capacity(GATHER_MIN);
        buf.extend_from_slice(&[7; GATHER_MIN]);
        let mut written = buf.freeze();
        written.advance(GATHER_MIN - 10);
        recycle(written);
        let again = buffer_for(GATHER_MIN);
        assert!(again.capacity() >= GATHER_MIN);
    }

    #[test]
    fn a_frame_above_the_gather_limit_grows_the_tail_and_is_read_whole() {
        let huge = request(5, "svc", &"h".repeat(GATHER_MAX));
        assert_eq!(read(&huge, &[100, 70_000, 600_000]), vec![(5, huge.len(), false)]);
    }

    #[test]
    fn a_small_frame_in_pieces_grows_the_tail() {
        let f = request(3, "svc", &"z".repeat(1000));
        assert_eq!(read(&f, &[10, 500]), vec![(3, f.len(), false)]);
    }

    #[test]
    fn a_frame_cut_inside_its_header_is_still_gathered() {
        let big = request(9, "svc", &"x".repeat(GATHER_MIN));
        assert_eq!(read(&big, &[3, 40, 1000]), vec![(9, big.len(), true)]);
    }

    #[test]
    fn the_frames_after_a_split_one_are_read_in_place() {
        let (a, b, c) = (request(1, "svc", &"a".repeat(300)), request(2, "svc", "b"), request(3, "svc", "c"));
        let mut stream = a.clone();
        stream.extend(&b);
        stream.extend(&c);
        let mut reader = FrameReader::default();
        reader.feed(&stream[..100], &BOLT_V1, 1 << 24, |_, _| panic!("no whole frame yet")).unwrap();
        let rest = &stream[100..];
        let mut got = Vec::new();
        reader
            .feed(rest, &BOLT_V1, 1 << 24, |f, i| {
                let Frame::Read(bytes) = f else { panic!("small frames come as slices") };
                got.push((i.id, rest.as_ptr_range().contains(&bytes.as_ptr())));
            })
            .unwrap();
        assert_eq!(got, [(1, false), (2, true), (3, true)], "only the split frame is copied");
        assert!(!reader.has_partial() && reader.tail.capacity() == 0, "nothing held after the last frame");
    }

    proptest::proptest! {
        /// Small, middling, large (gathered) and cut-in-the-header frames,
        /// cut anywhere: each comes out once, in order, whole.
        #[test]
        fn frames_cut_anywhere_come_out_whole_and_in_order(
            sizes in proptest::collection::vec(0usize..40_000, 1..12),
            cuts in proptest::collection::vec(0usize..200_000, 0..24),
        ) {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for (i, &n) in sizes.iter().enumerate() {
                let f = request(i as u32 + 1, "svc", &"x".repeat(n));
                want.push((i as u64 + 1, f.len()));
                stream.extend(f);
            }
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c > 0 && c < stream.len()).collect();
            cuts.sort_unstable();
            cuts.dedup();
            let got: Vec<(u64, usize)> = read(&stream, &cuts).into_iter().map(|(id, len, _)| (id, len)).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_its_body() {
        let big = request(9, "svc", &"x".repeat(100_000));
        let mut reader = FrameReader::default();
        let err = reader.feed(&big[..100], &BOLT_V1, 65_536, |_, _| {}).unwrap_err();
        assert!(matches!(err, CodecError::TooLarge { .. }));
    }
}
