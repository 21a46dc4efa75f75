//! A strict `Transfer-Encoding: chunked` reader (RFC 9112 §7.1) that works
//! on the bytes as they arrive: it says where the message ends, so a relay
//! can pass the bytes on unchanged and know when the connection is at a
//! message boundary again, and it hands out the data for a decoder.
//!
//! Refused, where lenient parsers differ and smuggling starts: a size with
//! no hex digit or more than 15 (an overflow), whitespace anywhere in the
//! size line, a bare LF for a CRLF, an extension that is not `;` token
//! characters (with an optional `=` token or quoted value), and data not
//! followed by CRLF. Trailer fields are read through and not interpreted.

/// How a chunked body was malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the size's hex digits (`n` of them so far).
    Size {
        digits: u8,
    },
    /// In an extension, up to the line's CR.
    Extension,
    /// The size line's CR was read: LF next.
    SizeLf,
    /// This many data bytes left.
    Data(u64),
    /// After the data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer line, up to its CR.
    Trailer,
    TrailerLf,
    /// The final CRLF's LF.
    EndLf,
    Done,
}

/// The reader's position in one chunked body.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    size: u64,
    /// Bytes of the current trailer section, bounded.
    trailer_bytes: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

/// The most bytes of trailer fields read through before refusing.
const MAX_TRAILERS: usize = 16 << 10;

impl Chunked {
    /// At the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            trailer_bytes: 0,
        }
    }

    /// Whether the body's last byte has been read.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `buf` (the next bytes of the body) up to the body's end;
    /// `data` is given each run of chunk data. Returns how many bytes of
    /// `buf` belong to the body: all of them, or fewer when it ended.
    pub fn read(&mut self, buf: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = left.min((buf.len() - i) as u64) as usize;
                data(&buf[i..i + take]);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.step(buf[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// One byte outside chunk data.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match (self.state, b) {
            (State::Size { digits }, _) if b.is_ascii_hexdigit() => {
                if digits == 15 {
                    return Err(ChunkError("chunk size over 15 hex digits"));
                }
                self.size = self.size << 4 | u64::from(hex_value(b));
                State::Size { digits: digits + 1 }
            }
            (State::Size { digits: 0 }, _) => return Err(ChunkError("chunk size with no digit")),
            (State::Size { .. }, b';') => State::Extension,
            (State::Size { .. }, b'\r') => State::SizeLf,
            (State::Size { .. }, _) => return Err(ChunkError("bad byte in the chunk size")),
            (State::Extension, b'\r') => State::SizeLf,
            (State::Extension, _) if extension_byte(b) => State::Extension,
            (State::Extension, _) => return Err(ChunkError("bad byte in a chunk extension")),
            (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => State::Data(std::mem::take(&mut self.size)),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf | State::TrailerLf | State::EndLf, b'\n') => match self.state {
                State::DataLf => State::Size { digits: 0 },
                State::TrailerLf => State::TrailerStart,
                _ => State::Done,
            },
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::Trailer, b'\n' | 0) => {
                return Err(ChunkError("bare LF or NUL in a trailer"));
            }
            (State::TrailerStart | State::Trailer, _) => {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILERS {
                    return Err(ChunkError("trailer section too large"));
                }
                State::Trailer
            }
            _ => return Err(ChunkError("CRLF expected")),
        };
        Ok(())
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// A byte allowed in `; name [= value]` extensions: token characters, `=`,
/// `;`, and what a quoted value holds (but no control byte, CR or LF).
fn extension_byte(b: u8) -> bool {
    matches!(b, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'..=b'`' | b'|' | b'~')
        || b.is_ascii_alphanumeric()
        || matches!(b, b'=' | b';' | b'"')
}

/// Writes one chunk (size line, data, CRLF) for `data` into `out`; an
/// empty `data` writes nothing (the last chunk is [`LAST_CHUNK`]).
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    use std::io::Write as _;
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
