//! TensorBoard event files, written as TensorFlow writes them, without
//! TensorFlow: `events.out.tfevents.*` files of TFRecord-framed `Event`
//! protocol buffers.
//!
//! TFRecord framing: each record is `u64 length (little endian)`,
//! `u32 masked_crc32c(length bytes)`, the data, `u32 masked_crc32c(data)`.
//! The first event of a file carries `file_version = "brain.Event:2"`; the
//! others carry a `Summary` of scalar values (`simple_value`, the form
//! `tf.compat.v1.summary.scalar` writes and TensorBoard's scalar dashboard
//! reads). The messages below are prost derives of TensorFlow 2.15's
//! tensorflow/core/util/event.proto and framework/summary.proto, with only
//! the fields centroid writes (as in `export::proto`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// `tensorflow.Event` (event.proto): `file_version` (3) and `summary` (5)
/// are members of the `what` oneof; centroid sets one of them per event.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step.
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The first event of a file: its format version.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// The values recorded at this step.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary` (summary.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// One entry per tag.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a tag and, here, always a `simple_value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The series' name (`loss`, `score`, ...).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// The prefix TensorBoard looks for in event file names.
pub const EVENT_FILE_PREFIX: &str = "events.out.tfevents.";

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut bit = 0;
            while bit < 8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0x82F6_3B78
                } else {
                    c >> 1
                };
                bit += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC: a CRC of data that holds CRCs is itself
/// scrambled so that it is not mistaken for a plain one.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xA282_EAD8)
}

/// One TFRecord around `data`.
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn hostname() -> String {
    let name = fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "localhost".to_string());
    // The name becomes part of a file name.
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Appends scalar summaries to one event file in a folder. The file is
/// created on the first write, named as TensorFlow names its own
/// (`events.out.tfevents.<seconds>.<host>`, plus the process id and a
/// counter so two writers never share a file).
#[derive(Debug)]
pub struct EventWriter {
    dir: PathBuf,
    path: Option<PathBuf>,
}

impl EventWriter {
    /// A writer into `dir` (created when the first event is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            path: None,
        }
    }

    /// The event file, once something has been written.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn open(&mut self) -> Result<PathBuf> {
        if let Some(p) = &self.path {
            return Ok(p.clone());
        }
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        fs::create_dir_all(&self.dir).map_err(|e| Error::io("cannot create", &self.dir, e))?;
        let wall = now();
        let path = self.dir.join(format!(
            "{EVENT_FILE_PREFIX}{:010}.{}.{}.{}",
            wall as u64,
            hostname(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let first = Event {
            wall_time: wall,
            step: 0,
            file_version: Some("brain.Event:2".to_string()),
            summary: None,
        };
        // create_new (O_EXCL) neither follows nor replaces a planted symlink.
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&tfrecord(&prost::Message::encode_to_vec(&first))))
            .map_err(|e| Error::io("cannot write", &path, e))?;
        self.path = Some(path.clone());
        Ok(path)
    }

    /// Writes one event with the given scalars at `step`. Each event is
    /// written whole and at once, so a reader never sees half of one.
    pub fn scalars(&mut self, step: i64, values: &[(&str, f64)]) -> Result<()> {
        let path = self.open()?;
        let event = Event {
            wall_time: now(),
            step,
            file_version: None,
            summary: Some(Summary {
                value: values
                    .iter()
                    .map(|(tag, v)| SummaryValue {
                        tag: tag.to_string(),
                        simple_value: Some(*v as f32),
                    })
                    .collect(),
            }),
        };
        crate::safe_io::open_append(&path)
            .and_then(|mut f| f.write_all(&tfrecord(&prost::Message::encode_to_vec(&event))))
            .map_err(|e| Error::io("cannot append to", &path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // RFC 3720 (iSCSI), appendix B.4, and the standard "123456789" check.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
    }

    #[test]
    fn a_record_frames_its_data_with_length_and_masked_crcs() {
        let rec = tfrecord(b"abc");
        assert_eq!(rec.len(), 8 + 4 + 3 + 4);
        assert_eq!(&rec[..8], &3u64.to_le_bytes());
        let masked = |c: u32| c.rotate_right(15).wrapping_add(0xA282_EAD8);
        assert_eq!(
            &rec[8..12],
            &masked(crc32c(&3u64.to_le_bytes())).to_le_bytes()
        );
        assert_eq!(&rec[12..15], b"abc");
        assert_eq!(&rec[15..], &masked(crc32c(b"abc")).to_le_bytes());
    }

    #[test]
    fn events_are_written_after_the_version_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::new(dir.path().join("eval"));
        w.scalars(7, &[("loss", 2.5)]).unwrap();
        let bytes = fs::read(w.path().unwrap()).unwrap();
        let mut events = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            let data = &rest[12..12 + n];
            assert_eq!(&rest[12 + n..16 + n], &masked_crc32c(data).to_le_bytes());
            events.push(<Event as prost::Message>::decode(data).unwrap());
            rest = &rest[16 + n..];
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(events[1].step, 7);
        let v = &events[1].summary.as_ref().unwrap().value[0];
        assert_eq!((v.tag.as_str(), v.simple_value), ("loss", Some(2.5)));
    }
}
