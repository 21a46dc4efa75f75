//! A strict `Transfer-Encoding: chunked` reader (RFC 9112 §7.1) that works
//! on the bytes as they arrive: it says where the message ends, so a relay
//! can pass the bytes on unchanged and know when the connection is at a
//! message boundary again, and it hands out the data for a decoder.
//!
//! Refused, where lenient parsers differ and smuggling starts: a size with
//! no hex digit or more than 15 (an overflow), whitespace anywhere in the
//! size line, a bare LF for a CRLF, an extension that is not `;` token
//! characters (with an optional `=` token or quoted value), data not
//! followed by CRLF, and a trailer section that is not header fields (or
//! holds more than 100 of them, or 16 KiB). Trailers are then dropped.

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
    /// The trailer section read so far (rare: allocated only when there
    /// is one), checked as header fields once it ends.
    trailers: Vec<u8>,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

/// The most bytes of trailer fields read before refusing (hyper's limit).
const MAX_TRAILERS: usize = 16 << 10;

impl Chunked {
    /// At the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size { digits: 0 },
            size: 0,
            trailers: Vec::new(),
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
        let in_trailers = match self.state {
            State::TrailerStart => b != b'\r',
            State::Trailer | State::TrailerLf => true,
            _ => false,
        };
        if in_trailers {
            if self.trailers.len() >= MAX_TRAILERS {
                return Err(ChunkError("trailer section too large"));
            }
            self.trailers.push(b);
        }
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
            (State::EndLf, b'\n') => {
                check_trailers(&mut self.trailers)?;
                State::Done
            }
            (State::DataLf, b'\n') => State::Size { digits: 0 },
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::TrailerStart | State::Trailer, b'\n' | 0) => {
                return Err(ChunkError("bare LF or NUL in a trailer"));
            }
            (State::TrailerStart | State::Trailer, _) => State::Trailer,
            _ => return Err(ChunkError("CRLF expected")),
        };
        Ok(())
    }
}

/// A trailer section must be header fields, as a request head's are (the
/// same parser, the same count limit); they are then dropped.
fn check_trailers(t: &mut Vec<u8>) -> Result<(), ChunkError> {
    if t.is_empty() {
        return Ok(());
    }
    t.extend_from_slice(b"\r\n");
    let mut fields = [httparse::EMPTY_HEADER; super::MAX_HEADERS];
    match httparse::parse_headers(t, &mut fields) {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        _ => Err(ChunkError("malformed trailer field")),
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
