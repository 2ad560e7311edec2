//! Fast paths for `Vec`s of numbers, the commonest payload of numerical programs: out of band in point-to-point
//! messages, a straight copy (bit-identical to bincode's encoding on little-endian machines) in collectives.

use super::{DeserializeOwned, Oob, OobSource, Result, Serialize};
use crate::buffer::{View, ViewSource, for_each_number};
use crate::sys::{same_type_owned, same_type_ref};

/// The elements of `value` if it is a `Vec` of numbers.
pub(super) fn view_of<T: Serialize + ?Sized>(value: &T) -> Option<View> {
    macro_rules! try_one {
        ($p:ty) => {
            if let Some(v) = same_type_ref::<T, Vec<$p>>(value) {
                return Some(v.view());
            }
        };
    }
    for_each_number!(try_one);
    None
}

/// Decodes a `Vec` of numbers sent out of band; gives the source back if `T` is not one.
pub(super) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    source: Box<dyn OobSource>,
    context: &dyn Fn() -> String,
) -> std::result::Result<Result<T>, Box<dyn OobSource>> {
    macro_rules! try_one {
        ($p:ty) => {
            if typeid::of::<T>() == std::any::TypeId::of::<Vec<$p>>() {
                let r = super::decode::<Oob<$p>>(bytes, source, context);
                return Ok(match r {
                    Ok(o) => Ok(same_type_owned::<Vec<$p>, T>(o.into_vec())
                        .ok()
                        .expect("T is this Vec type")),
                    // Errors name the type the caller asked for, not the wrapper used to decode it.
                    Err(e) => Err(crate::error::Error::new(
                        e.kind(),
                        e.message().replace(
                            &super::user_type_name::<Oob<$p>>(),
                            &super::user_type_name::<Vec<$p>>(),
                        ),
                    )),
                });
            }
        };
    }
    for_each_number!(try_one);
    Err(source)
}

/// Appends the bincode encoding of a `Vec` of numbers with one copy; `false` if `value` is not one.
pub(super) fn encode_inline<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> bool {
    if cfg!(target_endian = "big") {
        return false;
    }
    macro_rules! try_one {
        ($p:ty) => {
            if let Some(v) = same_type_ref::<T, Vec<$p>>(value) {
                out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                out.extend_from_slice(bytemuck::cast_slice::<$p, u8>(v));
                return true;
            }
        };
    }
    for_each_number!(try_one);
    false
}

/// Decodes the bincode encoding of a `Vec` of numbers with one copy; `None` if `T` is not one (or the data is
/// not a well-formed encoding, which the general decoder then reports).
pub(super) fn decode_inline<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    if cfg!(target_endian = "big") || data.len() < 8 {
        return None;
    }
    macro_rules! try_one {
        ($p:ty) => {
            if typeid::of::<T>() == std::any::TypeId::of::<Vec<$p>>() {
                let mut len = [0u8; 8];
                len.copy_from_slice(&data[..8]);
                let n = u64::from_le_bytes(len) as usize;
                let body = &data[8..];
                if n.checked_mul(std::mem::size_of::<$p>()) != Some(body.len()) {
                    return None;
                }
                let mut v: Vec<$p> = bytemuck::zeroed_vec(n);
                bytemuck::cast_slice_mut::<$p, u8>(&mut v).copy_from_slice(body);
                return same_type_owned::<Vec<$p>, T>(v).ok();
            }
        };
    }
    for_each_number!(try_one);
    None
}
