//! The object codec: how serde values become message bytes, and [`Oob`], the out-of-band wrapper for large
//! numeric arrays inside objects.
//!
//! spmd encodes objects with bincode 1.3 (fixed-size integers, little-endian: a `Vec<f64>` is its length as a
//! `u64` followed by the raw floats), the fastest serde format measured on these machines. bincode is
//! unmaintained, so it stays behind this module: no bincode type appears in spmd's API.
//!
//! An object message is a 4-byte little-endian count of out-of-band arrays followed by the bincode bytes.
//! Decoding is bounded: it reads only the bytes that arrived, lengths inside the data cannot make it allocate more
//! than the message holds (serde caps pre-allocation), and trailing bytes are an error, which catches most
//! receives of the wrong type.
//!
//! # Out-of-band arrays
//! A field of type [`Oob<T>`] (`T` a [`Data`] type that is also serde) is not serialised: inside spmd's object messages, its
//! elements travel as their own buffer message beside the serialised rest, zero-copy on both sides, as pickle
//! protocol 5 buffers do for mpi4py. Outside spmd (any other serde format), `Oob<T>` serialises like `Vec<T>`.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use spmd::Oob;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Field { name: String, step: u64, values: Oob<f64> }
//!
//! let f = Field { name: "temperature".into(), step: 7, values: Oob(vec![0.0; 1 << 20]) };
//! assert_eq!(f.values.len(), 1 << 20);
//! ```
//!
//! Not covered yet: other codecs (postcard, wincode) behind a feature; `Oob` of ndarray arrays (use
//! `Oob<f64>` with the shape as a normal field).

use std::cell::RefCell;

use bincode::Options;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::buffer::{Data, Elem, View, ViewMut, ViewSource};
use crate::error::{Error, ErrorKind, Result};

/// Bytes before the bincode data in an object message: the number of out-of-band arrays (u32, little-endian).
pub(crate) const PREFIX: usize = 4;

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
    static SINK: RefCell<Option<Vec<View>>> = const { RefCell::new(None) };
    /// While an object is being decoded: where out-of-band arrays come from.
    static SOURCE: RefCell<Option<Box<dyn OobSource>>> = const { RefCell::new(None) };
    /// Reused encode buffer.
    static SEND_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Reused receive buffer.
    static RECV_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// An encoded object: the bytes (prefix + bincode) and the out-of-band arrays to send after them.
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    pub(crate) oob: Vec<View>,
}

/// Encodes `value` into a buffer taken from the thread's pool (give it back with [`recycle_send`]).
///
/// A `Vec` of numbers is sent as if it were an [`Oob`] field: its length in the message, its elements as their own
/// zero-copy message.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded> {
    let mut bytes = SEND_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    bytes.clear();
    if let Some(view) = numbers::view_of(value) {
        let size = view.len * view.elem.size;
        if size > OOB_MIN_BYTES {
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.extend_from_slice(&(view.len as u64).to_le_bytes());
            return Ok(Encoded { bytes, oob: vec![view] });
        }
    }
    bytes.extend_from_slice(&[0; PREFIX]);
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
    bytes[..PREFIX].copy_from_slice(&n.to_le_bytes());
    Ok(Encoded { bytes, oob })
}

/// Encodes `value` with out-of-band arrays inline (as sequences), for collectives: prefix 0 + bincode.
pub(crate) fn encode_inline<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; PREFIX];
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
    if let Some(msg) = packet_error(bytes) {
        return Err(Error::new(ErrorKind::InvalidArgument, msg));
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

/// Prefix value that marks a packet carrying an error instead of a value.
const ERROR_MARK: [u8; PREFIX] = [0xFF; PREFIX];

/// A packet that tells the receivers of a collective that it failed on the sender, with the reason.
pub(crate) fn error_packet(message: &str) -> Vec<u8> {
    let mut b = ERROR_MARK.to_vec();
    b.extend_from_slice(message.as_bytes());
    b
}

/// The reason carried by an error packet, if `bytes` is one.
pub(crate) fn packet_error(bytes: &[u8]) -> Option<String> {
    (bytes.len() >= PREFIX && bytes[..PREFIX] == ERROR_MARK)
        .then(|| String::from_utf8_lossy(&bytes[PREFIX..]).into_owned())
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
    if bytes.len() < PREFIX {
        return Err(Error::new(
            ErrorKind::Decode,
            format!(
                "{}: message of {} bytes is not an spmd object message",
                context(),
                bytes.len()
            ),
        ));
    }
    let mut p = [0u8; PREFIX];
    p.copy_from_slice(&bytes[..PREFIX]);
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
    let data = bytes.get(PREFIX..).unwrap_or(&[]);
    if bytes.get(..PREFIX) == Some(&[0; PREFIX])
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
                std::any::type_name::<T>()
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

/// A source of arrays received beforehand as bytes (non-blocking receives).
pub(crate) struct BytesOob {
    pub(crate) arrays: std::collections::VecDeque<Vec<u8>>,
}

impl OobSource for BytesOob {
    fn next_len(&mut self, elem: &Elem) -> Result<usize> {
        let size = crate::raw::elem_mpi_size(elem).map_err(|c| c.error("out-of-band element type"))?;
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
        crate::raw::unpack_bytes(&a, &into)
    }
}

/// An array inside an object that travels out of band: as its own zero-copy buffer message beside the
/// serialised rest of the object (see the [module docs](self)).
///
/// `Oob<T>` dereferences to `Vec<T>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Oob<T: Data>(pub Vec<T>);

impl<T: Data> std::ops::Deref for Oob<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Data> std::ops::DerefMut for Oob<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        &mut self.0
    }
}

impl<T: Data> From<Vec<T>> for Oob<T> {
    fn from(v: Vec<T>) -> Self {
        Oob(v)
    }
}

impl<T: Data + Serialize> Serialize for Oob<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let in_spmd = SINK.with(|s| {
            let mut s = s.borrow_mut();
            match s.as_mut() {
                Some(list) => {
                    list.push(self.0.view());
                    true
                }
                None => false,
            }
        });
        if in_spmd {
            serializer.serialize_u64(self.0.len() as u64)
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de, T: Data + DeserializeOwned> Deserialize<'de> for Oob<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let source = SOURCE.with(|s| s.borrow_mut().take());
        let Some(mut source) = source else {
            return Vec::<T>::deserialize(deserializer).map(Oob);
        };
        let result = (|| {
            let announced = u64::deserialize(deserializer)?;
            let elem = Elem::of::<T>();
            let len = source
                .next_len(&elem)
                .map_err(|e| D::Error::custom(format!("spmd: {}", e.message())))?;
            if len as u64 != announced {
                return Err(D::Error::custom(format!(
                    "spmd: out-of-band array of {len} elements of {} where {announced} were announced",
                    elem.name
                )));
            }
            let v: Vec<T> = crate::raw::vec_filled(len, |view| source.fill(view))
                .map_err(|e| D::Error::custom(format!("spmd: {}", e.message())))?;
            Ok(Oob(v))
        })();
        SOURCE.with(|s| *s.borrow_mut() = Some(source));
        result
    }
}

/// Fast paths for `Vec`s of numbers, the commonest payload of numerical programs: out of band in point-to-point
/// messages, a straight copy (bit-identical to bincode's encoding on little-endian machines) in collectives.
mod numbers {
    use super::{DeserializeOwned, Oob, OobSource, Result, Serialize};
    use crate::buffer::{View, ViewSource};
    use crate::raw::{same_type_owned, same_type_ref};

    macro_rules! each_number {
        ($m:ident, $($args:tt)*) => {
            $m!(f64, $($args)*); $m!(f32, $($args)*); $m!(i8, $($args)*); $m!(i16, $($args)*); $m!(i32, $($args)*);
            $m!(i64, $($args)*); $m!(u8, $($args)*); $m!(u16, $($args)*); $m!(u32, $($args)*); $m!(u64, $($args)*);
        };
    }

    /// The elements of `value` if it is a `Vec` of numbers.
    pub(super) fn view_of<T: Serialize + ?Sized>(value: &T) -> Option<View> {
        macro_rules! try_one {
            ($p:ty, $value:ident) => {
                if let Some(v) = same_type_ref::<T, Vec<$p>>($value) {
                    return Some(v.view());
                }
            };
        }
        each_number!(try_one, value);
        None
    }

    /// Decodes a `Vec` of numbers sent out of band; gives the source back if `T` is not one.
    pub(super) fn decode<T: DeserializeOwned>(
        bytes: &[u8],
        source: Box<dyn OobSource>,
        context: &dyn Fn() -> String,
    ) -> std::result::Result<Result<T>, Box<dyn OobSource>> {
        macro_rules! try_one {
            ($p:ty, $bytes:ident) => {
                if typeid::of::<T>() == std::any::TypeId::of::<Vec<$p>>() {
                    return Ok(super::decode::<Oob<$p>>($bytes, source, context).map(|o| {
                        same_type_owned::<Vec<$p>, T>(o.0)
                            .ok()
                            .expect("T is this Vec type")
                    }));
                }
            };
        }
        each_number!(try_one, bytes);
        Err(source)
    }

    /// Appends the bincode encoding of a `Vec` of numbers with one copy; `false` if `value` is not one.
    pub(super) fn encode_inline<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
        if cfg!(target_endian = "big") {
            return false;
        }
        macro_rules! try_one {
            ($p:ty, $value:ident) => {
                if let Some(v) = same_type_ref::<T, Vec<$p>>($value) {
                    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    out.extend_from_slice(bytemuck::cast_slice::<$p, u8>(v));
                    return true;
                }
            };
        }
        each_number!(try_one, value);
        false
    }

    /// Decodes the bincode encoding of a `Vec` of numbers with one copy; `None` if `T` is not one (or the data is
    /// not a well-formed encoding, which the general decoder then reports).
    pub(super) fn decode_inline<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
        if cfg!(target_endian = "big") || data.len() < 8 {
            return None;
        }
        macro_rules! try_one {
            ($p:ty, $data:ident) => {
                if typeid::of::<T>() == std::any::TypeId::of::<Vec<$p>>() {
                    let mut len = [0u8; 8];
                    len.copy_from_slice(&$data[..8]);
                    let n = u64::from_le_bytes(len) as usize;
                    let body = &$data[8..];
                    if n.checked_mul(std::mem::size_of::<$p>()) != Some(body.len()) {
                        return None;
                    }
                    let mut v: Vec<$p> = bytemuck::zeroed_vec(n);
                    bytemuck::cast_slice_mut::<$p, u8>(&mut v).copy_from_slice(body);
                    return same_type_owned::<Vec<$p>, T>(v).ok();
                }
            };
        }
        each_number!(try_one, data);
        None
    }
}

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
        let mut bytes = vec![0u8; PREFIX];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        bytes.extend_from_slice(&[0u8; 8]);
        let err = decode::<Vec<u64>>(&bytes, Box::new(NoOob), &|| "t".into()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        // A String claiming 2^62 bytes.
        let mut bytes = vec![0u8; PREFIX];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(decode::<String>(&bytes, Box::new(NoOob), &|| "t".into()).is_err());
    }

    #[test]
    fn oob_goes_out_of_band_and_back() {
        let v = WithOob {
            name: "x".into(),
            data: Oob(vec![1.0, 2.0, 3.0]),
        };
        let e = encode(&v).unwrap();
        assert_eq!(e.oob.len(), 1);
        assert_eq!(e.oob[0].len, 3);
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
    fn oob_outside_spmd_is_a_sequence() {
        let v = Oob(vec![1u32, 2, 3]);
        let bytes = bincode::serialize(&v).unwrap();
        let back: Oob<u32> = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, v);
    }
}
