//! The object codec: how serde values become message bytes, and [`Oob`], the out-of-band wrapper for large
//! numeric arrays inside objects.
//!
//! spmd encodes objects with bincode 1.3 (fixed-size integers, little-endian: a `Vec<f64>` is its length as a
//! `u64` followed by the raw floats), the fastest serde format measured on these machines. bincode is
//! unmaintained, so it stays behind this module: no bincode type appears in spmd's API.
//!
//! An object message is a 16-byte header — the 8 bytes `spmdOBJ1`, the number of out-of-band arrays as a
//! little-endian `u32`, 4 reserved bytes — followed by the bincode bytes; each out-of-band array follows as a
//! message of its own (see [`crate::p2p`]). The header lets a receive of the wrong family tell what it got.
//! Decoding is bounded: it reads only the bytes that arrived, lengths inside the data cannot make it allocate more
//! than the message holds (serde caps pre-allocation), and trailing bytes are an error, which catches most
//! receives of the wrong type.
//!
//! # Out-of-band arrays
//! A field of type [`Oob<T>`] (`T` a [`Data`] type that is also serde) is not serialised: inside spmd's
//! point-to-point object messages, its elements travel as their own buffer message beside the serialised rest,
//! zero-copy on both sides, as pickle protocol 5 buffers do for mpi4py. Outside spmd (any other serde format),
//! `Oob<T>` serialises like `Vec<T>`. Its elements are shared (reference-counted), so the encoder keeps them alive
//! until they are sent even when serde serialises a temporary (`#[serde(into = ...)]`); cloning an `Oob` is
//! cheap, and writing to a shared one copies it first.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use spmd::Oob;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Field { name: String, step: u64, values: Oob<f64> }
//!
//! let f = Field { name: "temperature".into(), step: 7, values: Oob::new(vec![0.0; 1 << 20]) };
//! assert_eq!(f.values.len(), 1 << 20);
//! ```
//!
//! (This file holds the codec, `Oob` and their unit tests; the fast paths for `Vec`s of numbers are in
//! `numbers.rs`.)
//!
//! Not covered yet: other codecs (postcard, wincode) behind a feature; `Oob` of ndarray arrays (use
//! `Oob<f64>` with the shape as a normal field).

use std::cell::RefCell;
use std::sync::Arc;

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::buffer::{Data, Elem, View, ViewMut, ViewSource, ViewSourceMut};
use crate::error::{Error, ErrorKind, Result};

/// Bytes before the bincode data in an object message (see the module docs).
pub(crate) const PREFIX: usize = 16;

/// The first 8 bytes of every object message.
pub(crate) const MAGIC: [u8; 8] = *b"spmdOBJ1";

/// A header announcing `parts` out-of-band arrays.
fn header(parts: u32) -> [u8; PREFIX] {
    let mut h = [0u8; PREFIX];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&parts.to_le_bytes());
    h
}

/// Whether `bytes` start like an object message.
pub(crate) fn is_object(bytes: &[u8]) -> bool {
    bytes.len() >= PREFIX && bytes[..8] == MAGIC
}

/// A `Vec` of numbers larger than this travels out of band; smaller ones are copied into the message (one message
/// is faster than two below the size where the copy costs more than a message).
const OOB_MIN_BYTES: usize = 16 << 10;

/// Receive buffers kept between messages are trimmed to this capacity (larger ones are freed after use).
const KEEP_CAPACITY: usize = 64 << 20;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

fn decode_options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_limit(limit as u64)
        .reject_trailing_bytes()
}

thread_local! {
    /// While an object is being encoded: the out-of-band arrays found so far.
    static SINK: RefCell<Option<Vec<Part>>> = const { RefCell::new(None) };
    /// While an object is being decoded: where out-of-band arrays come from.
    static SOURCE: RefCell<Option<Box<dyn OobSource>>> = const { RefCell::new(None) };
    /// Reused encode buffer.
    static SEND_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Reused receive buffer.
    static RECV_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Memory that an out-of-band array is sent from, kept alive by the encoded message.
pub(crate) trait OobData: Send + Sync {
    /// The elements, valid while `self` lives.
    fn oob_view(&self) -> View;
}

impl<T: Data> OobData for Vec<T> {
    fn oob_view(&self) -> View {
        self.view()
    }
}

/// An out-of-band array of an encoded object.
pub(crate) enum Part<'a> {
    /// The elements of an [`Oob`] field: shared, so they live as long as the encoded message.
    Shared(Arc<dyn OobData>),
    /// A top-level `Vec` of numbers, borrowed from the value for as long as the encoded message.
    Borrowed(View, std::marker::PhantomData<&'a ()>),
}

impl Part<'_> {
    /// The elements to send.
    pub(crate) fn view(&self) -> View {
        match self {
            Part::Shared(d) => d.oob_view(),
            Part::Borrowed(v, _) => View {
                ptr: v.ptr,
                len: v.len,
                elem: v.elem,
                layout: v.layout.clone(),
            },
        }
    }
}

/// An encoded object: the bytes (prefix + bincode) and the out-of-band arrays to send after them. It borrows the
/// value it was made from for `'a` (the top-level `Vec` fast path points into it).
pub(crate) struct Encoded<'a> {
    pub(crate) bytes: Vec<u8>,
    pub(crate) oob: Vec<Part<'a>>,
}

/// Encodes `value` into a buffer taken from the thread's pool (give it back with [`recycle_send`]).
///
/// A `Vec` of numbers larger than 16 KiB is sent as if it were an [`Oob`] field: its length in the message, its
/// elements as their own zero-copy message (borrowed from `value` for the life of the result).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded<'_>> {
    encode_with(value, true)
}

/// Encodes `value` without borrowing from it (for non-blocking sends, which outlive the borrow): a top-level
/// `Vec` of numbers is copied into the bytes; `Oob` fields stay shared.
pub(crate) fn encode_owned<T: Serialize + ?Sized>(value: &T) -> Result<Encoded<'static>> {
    let e = encode_with(value, false)?;
    let oob = e
        .oob
        .into_iter()
        .map(|p| match p {
            Part::Shared(d) => Part::Shared(d),
            Part::Borrowed(..) => unreachable!("encode_with(.., false) borrows nothing"),
        })
        .collect();
    Ok(Encoded { bytes: e.bytes, oob })
}

fn encode_with<T: Serialize + ?Sized>(value: &T, borrow: bool) -> Result<Encoded<'_>> {
    let mut bytes = SEND_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    bytes.clear();
    if borrow && let Some(view) = numbers::view_of(value) {
        let size = view.len * view.elem.size;
        if size > OOB_MIN_BYTES {
            bytes.extend_from_slice(&header(1));
            bytes.extend_from_slice(&(view.len as u64).to_le_bytes());
            return Ok(Encoded {
                bytes,
                oob: vec![Part::Borrowed(view, std::marker::PhantomData)],
            });
        }
    }
    bytes.extend_from_slice(&header(0));
    if numbers::encode_inline(value, &mut bytes) {
        return Ok(Encoded { bytes, oob: Vec::new() });
    }
    SINK.with(|s| *s.borrow_mut() = Some(Vec::new()));
    let r = options().serialize_into(&mut bytes, value);
    let oob = SINK.with(|s| s.borrow_mut().take()).unwrap_or_default();
    if let Err(e) = r {
        return Err(Error::new(
            ErrorKind::Encode,
            format!(
                "could not serialise a value of type {}: {e}",
                std::any::type_name::<T>()
            ),
        ));
    }
    let n = u32::try_from(oob.len()).map_err(|_| Error::new(ErrorKind::Encode, "too many out-of-band arrays"))?;
    bytes[..PREFIX].copy_from_slice(&header(n));
    Ok(Encoded { bytes, oob })
}

/// Encodes `value` with out-of-band arrays inline (as sequences), for collectives: prefix 0 + bincode.
pub(crate) fn encode_inline<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = header(0).to_vec();
    if numbers::encode_inline(value, &mut bytes) {
        return Ok(bytes);
    }
    options().serialize_into(&mut bytes, value).map_err(|e| {
        Error::new(
            ErrorKind::Encode,
            format!(
                "could not serialise a value of type {}: {e}",
                std::any::type_name::<T>()
            ),
        )
    })?;
    Ok(bytes)
}

/// Decodes bytes made by [`encode_inline`] (or an error packet, see [`error_packet`]).
pub(crate) fn decode_inline<T: DeserializeOwned>(bytes: &[u8], context: &dyn Fn() -> String) -> Result<T> {
    if let Some(e) = packet_error(bytes) {
        return Err(e);
    }
    if !is_object(bytes) {
        return Err(not_an_object(bytes.len(), context));
    }
    let data = bytes.get(PREFIX..).unwrap_or(&[]);
    if let Some(v) = numbers::decode_inline::<T>(data) {
        return Ok(v);
    }
    decode_options(data.len()).deserialize::<T>(data).map_err(|e| {
        Error::new(
            ErrorKind::Decode,
            format!(
                "{}: could not decode a message of {} bytes as {}: {e}",
                context(),
                bytes.len(),
                std::any::type_name::<T>()
            ),
        )
    })
}

/// The error for a message that is not an object message (most likely sent as a buffer).
pub(crate) fn not_an_object(bytes: usize, context: &dyn Fn() -> String) -> Error {
    Error::new(
        ErrorKind::WrongFamily,
        format!(
            "{}: received a buffer message of {bytes} bytes where an object was expected (it was sent with a \
             *_buf call or by a non-spmd program; receive it with a *_buf call, or send it with a *_obj call)",
            context()
        ),
    )
}

/// Out-of-band count that marks a packet carrying an error instead of a value.
const ERROR_PARTS: u32 = u32::MAX;

/// A packet that tells the receivers of a collective that it failed on the sender, with the reason.
pub(crate) fn error_packet(kind: ErrorKind, message: &str) -> Vec<u8> {
    let mut b = header(ERROR_PARTS).to_vec();
    b[12] = match kind {
        ErrorKind::SizeMismatch => 1,
        ErrorKind::Encode => 2,
        _ => 0,
    };
    b.extend_from_slice(message.as_bytes());
    b
}

/// An error packet carrying `e` (its kind and message, without the rank prefix).
pub(crate) fn error_packet_of(e: &Error) -> Vec<u8> {
    error_packet(e.kind(), e.message())
}

/// The error carried by an error packet, if `bytes` is one.
pub(crate) fn packet_error(bytes: &[u8]) -> Option<Error> {
    (is_object(bytes) && bytes[8..12] == ERROR_PARTS.to_le_bytes()).then(|| {
        let kind = match bytes[12] {
            1 => ErrorKind::SizeMismatch,
            2 => ErrorKind::Encode,
            _ => ErrorKind::InvalidArgument,
        };
        Error::new(kind, String::from_utf8_lossy(&bytes[PREFIX..]).into_owned())
    })
}

/// Returns an encode buffer to the thread's pool.
pub(crate) fn recycle_send(mut bytes: Vec<u8>) {
    if bytes.capacity() > KEEP_CAPACITY {
        bytes = Vec::new();
    }
    SEND_BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.capacity() < bytes.capacity() {
            *b = bytes;
        }
    });
}

/// A receive buffer of exactly `len` bytes from the thread's pool (contents unspecified: only bytes beyond what the
/// pooled buffer held before are zeroed).
pub(crate) fn recv_buffer(len: usize) -> Vec<u8> {
    let mut b = RECV_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    if b.len() >= len {
        b.truncate(len);
    } else {
        b.resize(len, 0);
    }
    b
}

/// Returns a receive buffer to the thread's pool.
pub(crate) fn recycle_recv(bytes: Vec<u8>) {
    if bytes.capacity() <= KEEP_CAPACITY {
        RECV_BUF.with(|b| {
            let mut b = b.borrow_mut();
            if b.capacity() < bytes.capacity() {
                *b = bytes;
            }
        });
    }
}

/// The number of out-of-band arrays announced by an object message, or an error if it is too short.
pub(crate) fn oob_count(bytes: &[u8], context: &dyn Fn() -> String) -> Result<usize> {
    if !is_object(bytes) {
        return Err(not_an_object(bytes.len(), context));
    }
    let mut p = [0u8; 4];
    p.copy_from_slice(&bytes[8..12]);
    Ok(u32::from_le_bytes(p) as usize)
}

/// Where `Oob` fields get their arrays while an object is decoded.
pub(crate) trait OobSource {
    /// The element count of the next array, which must hold elements of `elem`.
    fn next_len(&mut self, elem: &Elem) -> Result<usize>;
    /// Fills `into` (of the length `next_len` returned) with the next array.
    fn fill(&mut self, into: ViewMut) -> Result<()>;
}

/// Decodes an object message (prefix included), taking out-of-band arrays from `source`.
/// `context` names the receive for errors (operation, source, tag).
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    source: Box<dyn OobSource>,
    context: &dyn Fn() -> String,
) -> Result<T> {
    if !is_object(bytes) {
        return Err(not_an_object(bytes.len(), context));
    }
    let data = bytes.get(PREFIX..).unwrap_or(&[]);
    if bytes[8..12] == [0; 4]
        && let Some(v) = numbers::decode_inline::<T>(data)
    {
        return Ok(v);
    }
    let source = match numbers::decode::<T>(bytes, source, context) {
        Ok(v) => return v,
        Err(source) => source,
    };
    SOURCE.with(|s| *s.borrow_mut() = Some(source));
    let r = decode_options(data.len()).deserialize::<T>(data);
    SOURCE.with(|s| s.borrow_mut().take());
    r.map_err(|e| {
        let inner = match *e {
            bincode::ErrorKind::Custom(ref m) if m.starts_with("spmd:") => m.trim_start_matches("spmd: ").to_string(),
            ref other => other.to_string(),
        };
        Error::new(
            ErrorKind::Decode,
            format!(
                "{}: could not decode a message of {} bytes as {}: {inner}",
                context(),
                bytes.len(),
                user_type_name::<T>()
            ),
        )
    })
}

/// A source with no arrays (objects without out-of-band fields, and errors if one appears).
pub(crate) struct NoOob;

impl OobSource for NoOob {
    fn next_len(&mut self, _: &Elem) -> Result<usize> {
        Err(Error::new(
            ErrorKind::Decode,
            "the message has fewer out-of-band arrays than the type needs",
        ))
    }
    fn fill(&mut self, _: ViewMut) -> Result<()> {
        Err(Error::new(ErrorKind::Decode, "no out-of-band array to fill"))
    }
}

/// The name of `T` for messages, with spmd's own wrappers (`spmd::codec::Oob<u64>`) shown as the user wrote
/// them (`Oob<u64>`) and a top-level `Vec` of numbers decoded out of band named as itself.
pub(crate) fn user_type_name<T: ?Sized>() -> String {
    std::any::type_name::<T>().replace("spmd::codec::", "")
}

/// A source of arrays received beforehand as bytes (non-blocking receives).
pub(crate) struct BytesOob {
    pub(crate) arrays: std::collections::VecDeque<Vec<u8>>,
}

impl OobSource for BytesOob {
    fn next_len(&mut self, elem: &Elem) -> Result<usize> {
        let size = crate::sys::datatype::elem_mpi_size(elem).map_err(|c| c.error("out-of-band element type"))?;
        match self.arrays.front() {
            Some(a) if size > 0 && a.len() % size == 0 => Ok(a.len() / size),
            Some(a) => Err(Error::new(
                ErrorKind::Decode,
                format!(
                    "out-of-band array of {} bytes is not a whole number of {}",
                    a.len(),
                    elem.name
                ),
            )),
            None => NoOob.next_len(elem),
        }
    }
    fn fill(&mut self, into: ViewMut) -> Result<()> {
        let a = self
            .arrays
            .pop_front()
            .ok_or_else(|| Error::new(ErrorKind::Decode, "missing out-of-band array"))?;
        crate::sys::datatype::unpack_bytes(&a, &into)
    }
}

mod oob;
pub use oob::Oob;

mod numbers;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct WithOob {
        name: String,
        data: Oob<f64>,
    }

    #[test]
    fn roundtrip_plain_values() {
        let v = (vec![1.5f64, -0.0, f64::INFINITY], "héllo".to_string(), Some(3u8));
        let e = encode(&v).unwrap();
        assert_eq!(e.oob.len(), 0);
        let d: (Vec<f64>, String, Option<u8>) = decode(&e.bytes, Box::new(NoOob), &|| "test".into()).unwrap();
        assert_eq!(d, v);
    }

    #[test]
    fn wrong_type_is_a_decode_error() {
        let e = encode(&(1u64, 2u64)).unwrap();
        let err = decode::<u64>(&e.bytes, Box::new(NoOob), &|| "recv_obj from rank 1 (tag 2)".into()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(err.message().contains("recv_obj from rank 1 (tag 2)"), "{err}");
        assert!(err.message().contains("u64"), "{err}");
    }

    #[test]
    fn hostile_length_does_not_allocate() {
        // A Vec<u64> claiming 2^60 elements, followed by 8 bytes.
        let mut bytes = header(0).to_vec();
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 8]);
        let err = decode::<Vec<u64>>(&bytes, Box::new(NoOob), &|| "t".into()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        // A String claiming 2^62 bytes.
        let mut bytes = header(0).to_vec();
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode::<String>(&bytes, Box::new(NoOob), &|| "t".into()).is_err());
    }

    #[test]
    fn oob_goes_out_of_band_and_back() {
        let v = WithOob {
            name: "x".into(),
            data: Oob::new(vec![1.0, 2.0, 3.0]),
        };
        let e = encode(&v).unwrap();
        assert_eq!(e.oob.len(), 1);
        assert_eq!(e.oob[0].view().len, 3);
        // The serialised part holds only the name and the announced length.
        assert_eq!(e.bytes.len(), PREFIX + 8 + 1 + 8);
        let arr: Vec<u8> = v.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let src = BytesOob {
            arrays: [arr].into_iter().collect(),
        };
        let d: WithOob = decode(&e.bytes, Box::new(src), &|| "t".into()).unwrap();
        assert_eq!(d, v);
    }

    #[test]
    fn errors_name_the_callers_type() {
        // A top-level Vec<u64> decodes through spmd's out-of-band wrapper; the error names Vec<u64>.
        let e = encode(&(1u8, 2u8)).unwrap();
        let err = decode::<Vec<u64>>(&e.bytes, Box::new(NoOob), &|| "t".into()).unwrap_err();
        assert!(
            err.message().contains("Vec<u64>") && !err.message().contains("Oob"),
            "{err}"
        );
        let err = decode::<Oob<u64>>(&e.bytes, Box::new(NoOob), &|| "t".into()).unwrap_err();
        assert!(!err.message().contains("spmd::codec::"), "{err}");
    }

    #[test]
    fn oob_outside_spmd_is_a_sequence() {
        let v = Oob::new(vec![1u32, 2, 3]);
        let bytes = bincode::serialize(&v).unwrap();
        let back: Oob<u32> = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, v);
    }
}
