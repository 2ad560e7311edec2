//! [`Oob`]: an array inside an object that travels out of band (see the module docs of [`crate::codec`]).

use super::*;

/// An array inside an object that travels out of band: as its own zero-copy buffer message beside the
/// serialised rest of the object (see the [module docs](crate::codec)).
///
/// `Oob<T>` dereferences to `Vec<T>`; its elements are shared between clones (writing through `DerefMut` to a
/// shared one copies it first).
///
/// ```
/// use spmd::Oob;
/// let mut a = Oob::new(vec![1.0f64, 2.0]);
/// a.push(3.0);
/// assert_eq!(a.len(), 3);
/// let v: Vec<f64> = a.into_vec();
/// assert_eq!(v, [1.0, 2.0, 3.0]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Oob<T: Data>(Arc<Vec<T>>);

impl<T: Data> Oob<T> {
    /// Wraps a vector.
    pub fn new(v: Vec<T>) -> Self {
        Oob(Arc::new(v))
    }

    /// The vector (copied only if another clone still shares it).
    pub fn into_vec(self) -> Vec<T> {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl<T: Data> std::ops::Deref for Oob<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

impl<T: Data> std::ops::DerefMut for Oob<T> {
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.0)
    }
}

impl<T: Data> From<Vec<T>> for Oob<T> {
    fn from(v: Vec<T>) -> Self {
        Oob::new(v)
    }
}

impl<T: Data + Serialize> Serialize for Oob<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let in_spmd = SINK.with(|s| {
            let mut s = s.borrow_mut();
            match s.as_mut() {
                Some(list) => {
                    list.push(Part::Shared(Arc::clone(&self.0) as Arc<dyn OobData>));
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
            return Vec::<T>::deserialize(deserializer).map(Oob::new);
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
            let mut v: Vec<T> = crate::sys::memory::zeroed_vec(len);
            source
                .fill(v.view_mut())
                .map_err(|e| D::Error::custom(format!("spmd: {}", e.message())))?;
            Ok(Oob::new(v))
        })();
        SOURCE.with(|s| *s.borrow_mut() = Some(source));
        result
    }
}
