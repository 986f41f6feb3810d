//! Mini-batch training from a file: a shuffled stream with bounded memory,
//! its position for checkpoints, and the sample the centres start from.
//!
//! Files are often sorted (by class, by time), so reading them in order makes
//! every batch of a long stretch alike and the centres chase it. Each epoch
//! here visits the file's blocks (NPY row ranges, CSV chunks, Parquet row
//! groups) in a seeded random order; the rows this gives are cut into
//! windows of `buffer_rows` rows, each window's rows are shuffled, and the
//! window is cut into batches. Memory holds one window and one batch.
//!
//! Everything is a function of (seed, epoch, window), so the stream can be
//! restarted from a position (epoch, rows handed out in the epoch): the
//! command line stores it with each checkpoint, and a resumed run reads on
//! from there, giving the batches one longer run would have seen.
//! With `shuffle` off the windows are single batches in file order: the same
//! batches as reading the file front to back.

use std::cell::Cell;
use std::rc::Rc;

use centroid::{DType, Dense, Error, Float, Result};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::readers::{Block, Source};

/// Batches a default shuffle buffer holds.
pub const DEFAULT_BUFFER_BATCHES: usize = 64;
/// A default shuffle buffer holds no more than this many bytes of rows.
pub const DEFAULT_BUFFER_BYTES: usize = 16 << 20;
/// A window is cut from at least this many blocks (when the file has them),
/// so that even one window mixes rows from across the file.
const BLOCKS_PER_WINDOW: usize = 64;
/// Blocks have at least this many rows: fewer would make the CSV index (one
/// position per block) large and the reads small.
const MIN_BLOCK_ROWS: usize = 256;
/// Unshuffled streams read in blocks of this many rows at least.
const PLAIN_BLOCK_ROWS: usize = 1 << 16;
/// Rows per read while filling a window.
const READ_CHUNK_ROWS: usize = 8192;

/// Tags that keep the random streams of block order, window order and the
/// initial sample apart.
const ORDER_TAG: u64 = 0x006f_7264_6572; // "order"
const WINDOW_TAG: u64 = 0x7769_6e64_6f77; // "window"
const SAMPLE_TAG: u64 = 0x7361_6d70_6c65; // "sample"

/// How the training stream reads the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSettings {
    pub shuffle: bool,
    pub batch_size: usize,
    /// Rows shuffled together: a whole number of batches.
    pub buffer_rows: usize,
    pub seed: u64,
}

impl StreamSettings {
    /// The settings for `--batch-size`, `--shuffle-buffer`, `--no-shuffle`:
    /// the buffer is rounded up to whole batches; by default it is
    /// [`DEFAULT_BUFFER_BATCHES`] batches, cut to [`DEFAULT_BUFFER_BYTES`].
    pub fn new(
        batch_size: usize,
        shuffle: bool,
        buffer_rows: Option<usize>,
        width: usize,
        dtype: DType,
        seed: u64,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "--batch-size must be at least 1".into(),
            ));
        }
        let rows = match buffer_rows {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "--shuffle-buffer must be at least 1 row".into(),
                ))
            }
            Some(n) => n,
            None => {
                let elem_bytes = match dtype {
                    DType::F32 => 4,
                    DType::F64 => 8,
                };
                let row_bytes = width.max(1) * elem_bytes;
                let by_bytes = DEFAULT_BUFFER_BYTES / row_bytes;
                batch_size
                    .saturating_mul(DEFAULT_BUFFER_BATCHES)
                    .min(by_bytes)
            }
        };
        let batches = rows.div_ceil(batch_size).max(1);
        Ok(StreamSettings {
            shuffle,
            batch_size,
            buffer_rows: if shuffle {
                batches.saturating_mul(batch_size)
            } else {
                batch_size
            },
            seed,
        })
    }

    /// Rows per block, so that a window spans many blocks.
    fn block_rows(&self) -> usize {
        if self.shuffle {
            (self.buffer_rows / BLOCKS_PER_WINDOW).max(MIN_BLOCK_ROWS)
        } else {
            self.batch_size.max(PLAIN_BLOCK_ROWS)
        }
    }
}

/// Where the stream is: the next batch is in `epoch` (0-based), after the
/// first `rows` rows the epoch hands out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub epoch: u64,
    pub rows: u64,
}

/// The position as stored in a checkpoint, with what it depends on.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Saved {
    stream: String,
    epoch: u64,
    rows: u64,
    shuffle: bool,
    batch_size: usize,
    buffer_rows: usize,
    block_rows: usize,
    seed: u64,
    file_rows: usize,
}

const STREAM_KIND: &str = "file_stream/1";

/// The string stored with a checkpoint for `pos`.
pub fn encode_position(settings: &StreamSettings, file_rows: usize, pos: Position) -> String {
    let saved = Saved {
        stream: STREAM_KIND.to_string(),
        epoch: pos.epoch,
        rows: pos.rows,
        shuffle: settings.shuffle,
        batch_size: settings.batch_size,
        buffer_rows: settings.buffer_rows,
        block_rows: settings.block_rows(),
        seed: settings.seed,
        file_rows,
    };
    serde_json::to_string(&saved).unwrap_or_default()
}

/// Where to start from a checkpoint's input state. The position is kept
/// when it was recorded for the same settings and file size; otherwise the
/// order it belongs to cannot be continued, and the stream starts at the
/// top of the next epoch (`Err` carries a note saying so).
pub fn decode_position(
    settings: &StreamSettings,
    file_rows: usize,
    state: Option<&str>,
) -> std::result::Result<Position, (Position, String)> {
    let Some(text) = state else {
        return Ok(Position::default());
    };
    let Ok(saved) = serde_json::from_str::<Saved>(text) else {
        return Err((
            Position::default(),
            "the checkpoint's input position is not readable; starting at the top of the file"
                .into(),
        ));
    };
    let same = saved.stream == STREAM_KIND
        && saved.shuffle == settings.shuffle
        && saved.batch_size == settings.batch_size
        && saved.buffer_rows == settings.buffer_rows
        && saved.block_rows == settings.block_rows()
        && saved.seed == settings.seed
        && saved.file_rows == file_rows;
    if same && saved.rows <= file_rows as u64 {
        return Ok(Position {
            epoch: saved.epoch,
            rows: saved.rows,
        });
    }
    let next = Position {
        epoch: saved.epoch + u64::from(saved.rows > 0),
        rows: 0,
    };
    Err((
        next,
        format!(
            "the file or the stream settings (batch size, shuffle buffer, --no-shuffle, seed) differ from the checkpoint's, so its place in epoch {} cannot be continued; starting epoch {} from the top",
            saved.epoch + 1,
            next.epoch + 1
        ),
    ))
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn rng_for(seed: u64, tag: u64, a: u64, b: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(mix(mix(seed ^ tag) ^ a) ^ b))
}

/// Rows of one element type, held between reading and batching.
enum Rows {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Rows {
    fn new(dtype: DType, capacity: usize) -> Rows {
        match dtype {
            DType::F32 => Rows::F32(Vec::with_capacity(capacity)),
            DType::F64 => Rows::F64(Vec::with_capacity(capacity)),
        }
    }
    fn clear(&mut self) {
        match self {
            Rows::F32(v) => v.clear(),
            Rows::F64(v) => v.clear(),
        }
    }
    /// Appends rows `r0..r1` of `d`.
    fn extend(&mut self, d: &Dense<'_>, r0: usize, r1: usize) {
        let w = d.cols();
        match self {
            Rows::F32(v) => v.extend_from_slice(&d.to_type::<f32>()[r0 * w..r1 * w]),
            Rows::F64(v) => v.extend_from_slice(&d.to_type::<f64>()[r0 * w..r1 * w]),
        }
    }
    /// The rows `picks` names, as one batch.
    fn gather(&self, picks: &[u32], width: usize) -> Result<Dense<'static>> {
        fn take<T: Float>(v: &[T], picks: &[u32], w: usize) -> Vec<T> {
            let mut out = Vec::with_capacity(picks.len() * w);
            for &r in picks {
                let r = r as usize;
                out.extend_from_slice(&v[r * w..(r + 1) * w]);
            }
            out
        }
        match self {
            Rows::F32(v) => Dense::new(take(v, picks, width), picks.len(), width),
            Rows::F64(v) => Dense::new(take(v, picks, width), picks.len(), width),
        }
    }
    /// Row `r` replaced by row `src` of `d`.
    fn replace(&mut self, r: usize, d: &Dense<'_>, src: usize) {
        let w = d.cols();
        match self {
            Rows::F32(v) => {
                v[r * w..(r + 1) * w].copy_from_slice(&d.to_type::<f32>()[src * w..(src + 1) * w])
            }
            Rows::F64(v) => {
                v[r * w..(r + 1) * w].copy_from_slice(&d.to_type::<f64>()[src * w..(src + 1) * w])
            }
        }
    }
    fn into_dense(self, rows: usize, width: usize) -> Result<Dense<'static>> {
        match self {
            Rows::F32(v) => Dense::new(v, rows, width),
            Rows::F64(v) => Dense::new(v, rows, width),
        }
    }
}

type Pieces<'s> = Box<dyn Iterator<Item = Result<Dense<'static>>> + 's>;

/// The training batches of a file, from a position on, as an iterator.
pub struct FileStream<'s> {
    source: &'s dyn Source,
    settings: StreamSettings,
    blocks: Vec<Block>,
    file_rows: usize,
    width: usize,
    /// Position of the next batch.
    pos: Position,
    /// The position after the last batch handed out, for checkpoints.
    published: Rc<Cell<Position>>,
    /// Batches still to hand out (None: no end).
    remaining: Option<u64>,
    /// The epoch's block order.
    order: Vec<usize>,
    order_epoch: Option<u64>,
    /// Sequential reading: (epoch, rows of the epoch read so far) where the
    /// reader stands, the open block's pieces, the next block in `order`,
    /// and the unread part of the last piece.
    read_at: Option<Position>,
    reader: Option<Pieces<'s>>,
    next_block: usize,
    carry: Option<(Dense<'static>, usize)>,
    /// The current window, its order, and how many of its rows are out.
    window: Rows,
    window_rows: usize,
    picks: Vec<u32>,
    served: usize,
    failed: bool,
}

impl<'s> FileStream<'s> {
    /// A stream from the top of epoch 0; `epochs` bounds how many epochs' worth
    /// of batches it hands out (None: no end).
    pub fn new(
        source: &'s dyn Source,
        settings: StreamSettings,
        epochs: Option<u64>,
    ) -> Result<Self> {
        let blocks = source.blocks(settings.block_rows())?;
        let file_rows: usize = blocks.iter().map(|b| b.rows).sum();
        if file_rows == 0 {
            return Err(Error::InvalidData(format!(
                "{} holds no data rows",
                source.path().display()
            )));
        }
        // A window never holds more than the file's rows, so only that many
        // need to be addressable.
        if settings.shuffle && settings.buffer_rows.min(file_rows) > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!(
                "--shuffle-buffer {} is larger than {} rows",
                settings.buffer_rows,
                u32::MAX
            )));
        }
        let per_epoch = file_rows.div_ceil(settings.batch_size) as u64;
        Ok(FileStream {
            source,
            settings,
            blocks,
            file_rows,
            width: source.width(),
            pos: Position::default(),
            published: Rc::new(Cell::new(Position::default())),
            remaining: epochs.map(|e| e.saturating_mul(per_epoch)),
            order: Vec::new(),
            order_epoch: None,
            read_at: None,
            reader: None,
            next_block: 0,
            carry: None,
            window: Rows::new(
                source.dtype(),
                settings.buffer_rows.min(file_rows) * source.width(),
            ),
            window_rows: 0,
            picks: Vec::new(),
            served: 0,
            failed: false,
        })
    }

    /// Continues from `pos` instead of the start.
    pub fn start_at(&mut self, pos: Position) {
        self.pos = pos;
        self.published.set(pos);
        self.window_rows = 0;
        self.served = 0;
    }

    /// Rows in the file (as counted when its blocks were found).
    pub fn file_rows(&self) -> usize {
        self.file_rows
    }

    /// The position after the last batch handed out, shared so that the
    /// checkpoint callback can read it while the Estimator holds the stream.
    pub fn position(&self) -> Rc<Cell<Position>> {
        Rc::clone(&self.published)
    }

    fn block_order(&mut self, epoch: u64) {
        if self.order_epoch == Some(epoch) {
            return;
        }
        self.order = (0..self.blocks.len()).collect();
        if self.settings.shuffle {
            let mut rng = rng_for(self.settings.seed, ORDER_TAG, epoch, 0);
            self.order.shuffle(&mut rng);
        }
        self.order_epoch = Some(epoch);
    }

    /// Puts the reader at row `rows` of `epoch`'s block order.
    fn seek(&mut self, epoch: u64, rows: usize) -> Result<()> {
        self.block_order(epoch);
        self.carry = None;
        self.reader = None;
        let mut left = rows;
        let mut i = 0;
        while i < self.order.len() && left >= self.blocks[self.order[i]].rows {
            left -= self.blocks[self.order[i]].rows;
            i += 1;
        }
        if i < self.order.len() {
            let block = &self.blocks[self.order[i]];
            self.reader = Some(self.source.read_block(block, left, READ_CHUNK_ROWS)?);
            i += 1;
        }
        self.next_block = i;
        self.read_at = Some(Position {
            epoch,
            rows: rows as u64,
        });
        Ok(())
    }

    /// Reads the next `n` rows of the epoch's order into the window.
    fn read_into_window(&mut self, n: usize) -> Result<()> {
        let mut need = n;
        while need > 0 {
            if let Some((piece, used)) = self.carry.take() {
                let take = need.min(piece.rows() - used);
                self.window.extend(&piece, used, used + take);
                need -= take;
                if used + take < piece.rows() {
                    self.carry = Some((piece, used + take));
                }
                continue;
            }
            if let Some(reader) = self.reader.as_mut() {
                match reader.next() {
                    Some(piece) => {
                        let piece = piece?;
                        if piece.cols() != self.width {
                            return Err(Error::InvalidData(format!(
                                "{}: a block has {} columns, expected {}",
                                self.source.path().display(),
                                piece.cols(),
                                self.width
                            )));
                        }
                        self.carry = Some((piece, 0));
                        continue;
                    }
                    None => self.reader = None,
                }
            }
            let Some(&b) = self.order.get(self.next_block) else {
                return Err(Error::InvalidData(format!(
                    "{}: the file has fewer rows than when it was opened (was it changed while training?)",
                    self.source.path().display()
                )));
            };
            self.reader = Some(
                self.source
                    .read_block(&self.blocks[b], 0, READ_CHUNK_ROWS)?,
            );
            self.next_block += 1;
        }
        if let Some(at) = self.read_at.as_mut() {
            at.rows += n as u64;
        }
        Ok(())
    }

    /// Loads the window holding row `pos.rows` of `pos.epoch`.
    fn fill_window(&mut self) -> Result<()> {
        let Position { epoch, rows } = self.pos;
        let wr = self.settings.buffer_rows;
        let index = rows as usize / wr;
        let start = index * wr;
        let n = wr.min(self.file_rows - start);
        let here = Position {
            epoch,
            rows: start as u64,
        };
        if self.read_at != Some(here) {
            self.seek(epoch, start)?;
        }
        self.window.clear();
        self.read_into_window(n)?;
        self.window_rows = n;
        self.picks = (0..n as u32).collect();
        if self.settings.shuffle {
            let mut rng = rng_for(self.settings.seed, WINDOW_TAG, epoch, index as u64);
            self.picks.shuffle(&mut rng);
        }
        self.served = rows as usize - start;
        Ok(())
    }

    fn next_batch(&mut self) -> Result<Dense<'static>> {
        if self.pos.rows as usize >= self.file_rows {
            self.pos = Position {
                epoch: self.pos.epoch + 1,
                rows: 0,
            };
            self.window_rows = 0;
            self.served = 0;
        }
        if self.served >= self.window_rows {
            self.fill_window()?;
        }
        let take = self.settings.batch_size.min(self.window_rows - self.served);
        let batch = self
            .window
            .gather(&self.picks[self.served..self.served + take], self.width)?;
        self.served += take;
        self.pos.rows += take as u64;
        self.published.set(self.pos);
        Ok(batch)
    }
}

impl Iterator for FileStream<'_> {
    type Item = Result<Dense<'static>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.remaining == Some(0) {
            return None;
        }
        if let Some(r) = self.remaining.as_mut() {
            *r -= 1;
        }
        let out = self.next_batch();
        self.failed = out.is_err();
        Some(out)
    }
}

/// A uniform random sample of `m` rows of the whole file (all rows when it
/// has no more), read in one pass with a seeded reservoir: the rows the
/// centres of a new model are chosen from.
pub fn reservoir_sample(source: &dyn Source, m: usize, seed: u64) -> Result<Dense<'static>> {
    let width = source.width();
    let m = m.max(1);
    let mut rng = rng_for(seed, SAMPLE_TAG, 0, 0);
    // A capacity hint only: a file of unknown length (CSV) starts small
    // rather than reserving all `m` rows (--batch-size can be huge).
    let expect = source.rows().map_or(m.min(READ_CHUNK_ROWS), |n| n.min(m));
    let mut kept = Rows::new(source.dtype(), expect * width);
    let (mut seen, mut held) = (0u64, 0usize);
    for piece in source.batches(READ_CHUNK_ROWS)? {
        let piece = piece?;
        for r in 0..piece.rows() {
            if held < m {
                kept.extend(&piece, r, r + 1);
                held += 1;
            } else {
                // Row `seen` replaces a kept one with probability m/(seen+1).
                let j = rng.gen_range(0..=seen);
                if j < m as u64 {
                    kept.replace(j as usize, &piece, r);
                }
            }
            seen += 1;
        }
    }
    if held == 0 {
        return Err(Error::InvalidData(format!(
            "{} holds no data rows",
            source.path().display()
        )));
    }
    kept.into_dense(held, width)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::readers::row_blocks;

    /// Rows `0..n` of one column holding the row's own index, read in blocks.
    struct Numbered {
        path: PathBuf,
        n: usize,
    }

    impl Source for Numbered {
        fn path(&self) -> &Path {
            &self.path
        }
        fn width(&self) -> usize {
            1
        }
        fn rows(&self) -> Option<usize> {
            Some(self.n)
        }
        fn dtype(&self) -> DType {
            DType::F64
        }
        fn batches(
            &self,
            batch_size: usize,
        ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
            let b = batch_size.max(1);
            Ok(Box::new((0..self.n.div_ceil(b)).map(move |i| {
                let v: Vec<f64> = (i * b..((i + 1) * b).min(self.n))
                    .map(|r| r as f64)
                    .collect();
                let rows = v.len();
                Dense::new(v, rows, 1)
            })))
        }
        fn blocks(&self, target_rows: usize) -> Result<Vec<Block>> {
            Ok(row_blocks(self.n, target_rows))
        }
        fn read_block(
            &self,
            block: &Block,
            skip: usize,
            chunk: usize,
        ) -> Result<Box<dyn Iterator<Item = Result<Dense<'static>>> + '_>> {
            let (start, end) = (block.first_row + skip, block.first_row + block.rows);
            let chunk = chunk.max(1);
            Ok(Box::new((start..end).step_by(chunk).map(move |r0| {
                let v: Vec<f64> = (r0..(r0 + chunk).min(end)).map(|r| r as f64).collect();
                let rows = v.len();
                Dense::new(v, rows, 1)
            })))
        }
    }

    fn numbered(n: usize) -> Numbered {
        Numbered {
            path: PathBuf::from("numbered"),
            n,
        }
    }

    fn rows_of(b: &Dense<'_>) -> Vec<usize> {
        b.to_type::<f64>().iter().map(|&v| v as usize).collect()
    }

    fn settings(shuffle: bool, batch: usize, buffer: usize) -> StreamSettings {
        StreamSettings::new(batch, shuffle, Some(buffer), 1, DType::F64, 7).unwrap()
    }

    #[test]
    fn buffer_is_whole_batches_and_default_is_capped_by_bytes() {
        assert_eq!(settings(true, 10, 25).buffer_rows, 30);
        assert_eq!(settings(true, 10, 3).buffer_rows, 10);
        assert_eq!(settings(false, 10, 500).buffer_rows, 10);
        let d = StreamSettings::new(100, true, None, 4, DType::F32, 0).unwrap();
        assert_eq!(d.buffer_rows, 6400);
        // 1000 x 1000 f64 rows per batch: 64 batches would be 512 MB.
        let d = StreamSettings::new(1000, true, None, 1000, DType::F64, 0).unwrap();
        assert_eq!(d.buffer_rows, 3000);
        assert!(StreamSettings::new(0, true, None, 1, DType::F32, 0).is_err());
        assert!(StreamSettings::new(5, true, Some(0), 1, DType::F32, 0).is_err());
    }

    #[test]
    fn every_epoch_is_a_permutation_and_epochs_differ() {
        let src = numbered(10_000);
        let s = settings(true, 100, 2000);
        let stream = FileStream::new(&src, s, Some(2)).unwrap();
        let batches: Vec<Vec<usize>> = stream.map(|b| rows_of(&b.unwrap())).collect();
        assert_eq!(batches.len(), 200);
        assert!(batches.iter().all(|b| b.len() == 100));
        let epoch = |e: usize| -> Vec<usize> { batches[e * 100..(e + 1) * 100].concat() };
        for e in 0..2 {
            let mut seen = epoch(e);
            seen.sort_unstable();
            assert_eq!(seen, (0..10_000).collect::<Vec<_>>(), "epoch {e}");
        }
        assert_ne!(epoch(0), epoch(1));
        // The first window is 2000 rows from 8 blocks of 256 (7 whole, one
        // cut), shuffled together: the first batch of 100 draws on them all
        // (missing one has a chance of about (7/8)^100).
        let mut blocks: Vec<usize> = batches[0].iter().map(|r| r / 256).collect();
        blocks.sort_unstable();
        blocks.dedup();
        assert!(blocks.len() >= 7, "{blocks:?}");
    }

    #[test]
    fn no_shuffle_is_file_order_with_a_short_last_batch() {
        let src = numbered(25);
        let stream = FileStream::new(&src, settings(false, 10, 100), Some(2)).unwrap();
        let batches: Vec<Vec<usize>> = stream.map(|b| rows_of(&b.unwrap())).collect();
        let one: Vec<Vec<usize>> = vec![(0..10).collect(), (10..20).collect(), (20..25).collect()];
        assert_eq!(batches, [one.clone(), one].concat());
    }

    #[test]
    fn same_seed_same_order_other_seed_other_order() {
        let src = numbered(3000);
        let run = |seed: u64| -> Vec<usize> {
            let s = StreamSettings::new(50, true, Some(500), 1, DType::F64, seed).unwrap();
            FileStream::new(&src, s, Some(1))
                .unwrap()
                .flat_map(|b| rows_of(&b.unwrap()))
                .collect()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn restarting_at_a_recorded_position_continues_the_same_batches() {
        for shuffle in [true, false] {
            let src = numbered(1234);
            let s = settings(shuffle, 32, 320);
            let whole: Vec<Vec<usize>> = FileStream::new(&src, s, None)
                .unwrap()
                .take(100)
                .map(|b| rows_of(&b.unwrap()))
                .collect();
            // Stop after 7 (mid-window), 39 (end of epoch 0) and 45 batches.
            for stop in [7usize, 39, 45] {
                let mut first = FileStream::new(&src, s, None).unwrap();
                let pos = first.position();
                let head: Vec<Vec<usize>> = first
                    .by_ref()
                    .take(stop)
                    .map(|b| rows_of(&b.unwrap()))
                    .collect();
                let text = encode_position(&s, 1234, pos.get());
                let at = decode_position(&s, 1234, Some(&text)).unwrap();
                let mut second = FileStream::new(&src, s, None).unwrap();
                second.start_at(at);
                let tail: Vec<Vec<usize>> = second
                    .take(100 - stop)
                    .map(|b| rows_of(&b.unwrap()))
                    .collect();
                assert_eq!(
                    [head, tail].concat(),
                    whole,
                    "shuffle {shuffle}, stop {stop}"
                );
            }
        }
    }

    #[test]
    fn a_position_from_other_settings_starts_the_next_epoch() {
        let s = settings(true, 32, 320);
        let text = encode_position(&s, 1000, Position { epoch: 2, rows: 64 });
        let other = settings(true, 16, 320);
        let (pos, note) = decode_position(&other, 1000, Some(&text)).unwrap_err();
        assert_eq!(pos, Position { epoch: 3, rows: 0 });
        assert!(note.contains("starting epoch 4"), "{note}");
        // The same settings but a file of another length.
        assert!(decode_position(&s, 999, Some(&text)).is_err());
        // No recorded position: the top of the file.
        assert_eq!(decode_position(&s, 1000, None), Ok(Position::default()));
    }

    #[test]
    fn reservoir_sample_is_distinct_rows_from_across_the_file() {
        let src = numbered(10_000);
        let sample = reservoir_sample(&src, 500, 1).unwrap();
        let mut rows = rows_of(&sample);
        assert_eq!(rows.len(), 500);
        rows.sort_unstable();
        rows.dedup();
        assert_eq!(rows.len(), 500);
        // Uniform: each half of the file gives about half (binomial sd ~11).
        let low = rows.iter().filter(|&&r| r < 5000).count();
        assert!((200..300).contains(&low), "{low}");
        assert_eq!(
            rows_of(&sample),
            rows_of(&reservoir_sample(&src, 500, 1).unwrap())
        );
        // A file with fewer rows than asked for gives them all.
        let small = reservoir_sample(&numbered(30), 500, 1).unwrap();
        assert_eq!(rows_of(&small), (0..30).collect::<Vec<_>>());
    }
}
