//! Typed buffers: the element trait [`Data`] and the [`Buffer`] / [`BufferMut`] traits for what can be sent and
//! received without serialisation.
//!
//! # Elements
//! [`Data`] is every type that has an MPI datatype (rsmpi's [`mpi::datatype::Equivalence`]) **and** for which every
//! bit pattern is a valid value (bytemuck's [`bytemuck::AnyBitPattern`]): the integer and float types, and your
//! own `#[repr(C)]` structs of such fields deriving both traits. `bool` and `char` are not `Data`: bytes from a
//! peer are never reinterpreted as a type with invalid bit patterns (send those as objects, or as `u8`/`u32`).
//!
//! ```
//! use mpi::traits::Equivalence;
//! use bytemuck::AnyBitPattern;
//!
//! #[derive(Equivalence, Clone, Copy, AnyBitPattern, Debug, PartialEq)]
//! #[repr(C)]
//! struct Particle { x: [f64; 3], mass: f64, id: u64 }
//!
//! fn is_data<T: spmd::Data>() {}
//! is_data::<Particle>();
//! ```
//!
//! # Buffers
//! Implemented for `[T]`, `Vec<T>`, `[T; N]`, single values of the primitive numeric types, and ndarray arrays and
//! views of any dimension (`ndarray::ArrayBase`). Contiguous data is handed to MPI as it is (zero-copy). Strided
//! ndarray views are described to MPI by a derived datatype (still no copy in spmd), elements in logical
//! (row-major) order; operations that need contiguous memory (most collectives) return
//! [`crate::ErrorKind::NotContiguous`] for them.
//!
//! Not covered yet: complex numbers (enable rsmpi's `complex` feature in your own crate and wrap them in a
//! `#[repr(C)]` struct), user-defined MPI reduction operations on buffers.

use std::any::type_name;

use mpi::datatype::Equivalence;

/// Element types that can travel as raw memory: an MPI datatype and no invalid bit patterns.
///
/// Implemented automatically for every `T: Equivalence + AnyBitPattern + Send + Sync`.
pub trait Data: Equivalence + bytemuck::AnyBitPattern + Send + Sync {}

impl<T: Equivalence + bytemuck::AnyBitPattern + Send + Sync> Data for T {}

pub(crate) use sealed::{ViewSource, ViewSourceMut};
pub(crate) use views::{Elem, ElemKind, Layout, View, ViewMut};

/// The descriptions of buffers that spmd hands to MPI. Public types in a private module: nameable only here.
mod views {
    use super::{Data, type_name};
    use mpi::raw::AsRaw;

    /// What spmd needs to know about an element type to describe it to MPI.
    #[derive(Clone, Copy)]
    pub struct Elem {
        /// The MPI datatype rsmpi gives for the type.
        pub(crate) datatype: mpi::ffi::MPI_Datatype,
        /// `size_of::<T>()`: the distance between consecutive elements in memory.
        pub(crate) size: usize,
        /// For error messages.
        pub(crate) name: &'static str,
        /// A process-unique key for caching derived datatypes (`TypeId` of `T`).
        pub(crate) key: std::any::TypeId,
        /// Whether the MPI datatype is predefined (then its extent is known to equal `size`).
        pub(crate) predefined: bool,
        /// What reductions are defined for it.
        pub(crate) kind: ElemKind,
    }

    /// Classes of element types, for checking reduction operations.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum ElemKind {
        /// `f32`, `f64`.
        Float,
        /// The integer types.
        Int,
        /// [`super::Loc`] pairs.
        Loc,
        /// Any other type (user structs).
        Other,
    }

    impl Elem {
        /// The description of `T`.
        #[inline]
        pub(crate) fn of<T: Data>() -> Elem {
            use std::any::TypeId;
            let key = TypeId::of::<T>();
            let float = key == TypeId::of::<f64>() || key == TypeId::of::<f32>();
            let loc = key == TypeId::of::<super::Loc<f64>>()
                || key == TypeId::of::<super::Loc<f32>>()
                || key == TypeId::of::<super::Loc<i32>>()
                || key == TypeId::of::<super::Loc<i64>>();
            let predefined = super::is_number::<T>();
            Elem {
                datatype: T::equivalent_datatype().as_raw(),
                size: std::mem::size_of::<T>(),
                name: type_name::<T>(),
                key,
                predefined,
                kind: if float {
                    ElemKind::Float
                } else if predefined {
                    ElemKind::Int
                } else if loc {
                    ElemKind::Loc
                } else {
                    ElemKind::Other
                },
            }
        }
    }

    /// How the elements of a buffer lie in memory.
    #[derive(Clone)]
    pub enum Layout {
        /// `len` elements one after the other.
        Contiguous,
        /// An n-dimensional view: `shape` and element `strides` (may be negative) from the first element.
        Strided { shape: Vec<usize>, strides: Vec<isize> },
    }

    /// A read-only view of a buffer, made only from a live borrow (see [`Buffer`]).
    pub struct View {
        pub(crate) ptr: *const u8,
        pub(crate) len: usize,
        pub(crate) elem: Elem,
        pub(crate) layout: Layout,
    }

    /// A writable view of a buffer, made only from a live exclusive borrow (see [`BufferMut`]).
    pub struct ViewMut {
        pub(crate) ptr: *mut u8,
        pub(crate) len: usize,
        pub(crate) elem: Elem,
        pub(crate) layout: Layout,
    }

    impl View {
        pub(crate) fn is_contiguous(&self) -> bool {
            matches!(self.layout, Layout::Contiguous)
        }
    }

    impl ViewMut {
        pub(crate) fn is_contiguous(&self) -> bool {
            matches!(self.layout, Layout::Contiguous)
        }
    }
}

/// A value with its location (an index, such as a rank), for the [`crate::Op::MinLoc`] and
/// [`crate::Op::MaxLoc`] reductions: the result is the smallest (largest) value and the smallest index among
/// those holding it. Implemented for `f32`, `f64`, `i32` and `i64` values (MPI's `MPI_FLOAT_INT`,
/// `MPI_DOUBLE_INT`, `MPI_2INT`, `MPI_LONG_INT`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct Loc<T> {
    /// The value compared.
    pub value: T,
    /// Its location.
    pub index: i32,
}

impl<T> Loc<T> {
    /// A value at a location.
    pub fn new(value: T, index: i32) -> Self {
        Loc { value, index }
    }
}

mod sealed {
    /// Implemented only in this crate: the views it returns are trusted by the MPI calls.
    pub trait ViewSource {
        /// A view of the elements; valid while the borrow of `self` lasts.
        fn view(&self) -> super::View;
        /// Start and length of the elements when they are contiguous (the fast path of every operation).
        #[inline]
        fn contig(&self) -> Option<(*const u8, usize)> {
            None
        }
    }
    /// Implemented only in this crate.
    pub trait ViewSourceMut {
        /// A writable view of the elements; valid while the exclusive borrow of `self` lasts.
        fn view_mut(&mut self) -> super::ViewMut;
        /// Start and length of the elements when they are contiguous.
        #[inline]
        fn contig_mut(&mut self) -> Option<(*mut u8, usize)> {
            None
        }
    }
}

/// Calls `$m!(type)` for each of the primitive numeric types: the one list of them in the crate.
macro_rules! for_each_number {
    ($m:ident) => {
        $m!(f32);
        $m!(f64);
        $m!(i8);
        $m!(i16);
        $m!(i32);
        $m!(i64);
        $m!(u8);
        $m!(u16);
        $m!(u32);
        $m!(u64);
        $m!(isize);
        $m!(usize);
    };
}
pub(crate) use for_each_number;

/// Whether `T` is one of the primitive numeric types (which have predefined MPI datatypes); decided at compile
/// time.
#[inline(always)]
pub(crate) fn is_number<T: 'static>() -> bool {
    use std::any::TypeId;
    let k = TypeId::of::<T>();
    macro_rules! is {
        ($t:ty) => {
            if k == TypeId::of::<$t>() {
                return true;
            }
        };
    }
    for_each_number!(is);
    false
}

/// A zeroed `Vec` of `len` elements for large messages: above 2 MiB its memory is advised to use transparent huge
/// pages before it is first touched, which makes large transfers faster where the kernel grants them (8 MiB
/// messages between huge-page buffers moved ~1.5× faster than between `malloc`'d ones on the machines spmd is
/// measured on). spmd allocates its own large receive buffers this way.
///
/// ```
/// let mut field: Vec<f64> = spmd::buffer::huge_vec(1 << 20);
/// field[0] = 1.0;
/// assert_eq!(field.len(), 1 << 20);
/// ```
pub fn huge_vec<T: Data>(len: usize) -> Vec<T> {
    crate::sys::memory::zeroed_vec(len)
}

/// Something that can be sent as raw memory: a slice, `Vec`, array, primitive value or ndarray of [`Data`].
///
/// This trait is sealed: spmd trusts the memory views it produces.
pub trait Buffer: sealed::ViewSource {
    /// The element type.
    type Item: Data;

    /// The number of elements.
    fn count(&self) -> usize {
        self.view().len
    }
}

/// Something that can be received into as raw memory: a mutable slice, `Vec` (its current length), array,
/// primitive value or mutable ndarray of [`Data`].
///
/// This trait is sealed.
pub trait BufferMut: Buffer + sealed::ViewSourceMut {}

fn slice_view<T: Data>(s: &[T]) -> View {
    View {
        ptr: s.as_ptr().cast(),
        len: s.len(),
        elem: Elem::of::<T>(),
        layout: Layout::Contiguous,
    }
}

fn slice_view_mut<T: Data>(s: &mut [T]) -> ViewMut {
    ViewMut {
        ptr: s.as_mut_ptr().cast(),
        len: s.len(),
        elem: Elem::of::<T>(),
        layout: Layout::Contiguous,
    }
}

impl<T: Data> sealed::ViewSource for [T] {
    fn view(&self) -> View {
        slice_view(self)
    }
    #[inline]
    fn contig(&self) -> Option<(*const u8, usize)> {
        Some((self.as_ptr().cast(), self.len()))
    }
}
impl<T: Data> Buffer for [T] {
    type Item = T;
}
impl<T: Data> sealed::ViewSourceMut for [T] {
    fn view_mut(&mut self) -> ViewMut {
        slice_view_mut(self)
    }
    #[inline]
    fn contig_mut(&mut self) -> Option<(*mut u8, usize)> {
        Some((self.as_mut_ptr().cast(), self.len()))
    }
}
impl<T: Data> BufferMut for [T] {}

impl<T: Data> sealed::ViewSource for Vec<T> {
    fn view(&self) -> View {
        slice_view(self)
    }
    #[inline]
    fn contig(&self) -> Option<(*const u8, usize)> {
        Some((self.as_ptr().cast(), self.len()))
    }
}
impl<T: Data> Buffer for Vec<T> {
    type Item = T;
}
impl<T: Data> sealed::ViewSourceMut for Vec<T> {
    fn view_mut(&mut self) -> ViewMut {
        slice_view_mut(self)
    }
    #[inline]
    fn contig_mut(&mut self) -> Option<(*mut u8, usize)> {
        Some((self.as_mut_ptr().cast(), self.len()))
    }
}
impl<T: Data> BufferMut for Vec<T> {}

impl<T: Data, const N: usize> sealed::ViewSource for [T; N] {
    fn view(&self) -> View {
        slice_view(self)
    }
    #[inline]
    fn contig(&self) -> Option<(*const u8, usize)> {
        Some((self.as_ptr().cast(), N))
    }
}
impl<T: Data, const N: usize> Buffer for [T; N] {
    type Item = T;
}
impl<T: Data, const N: usize> sealed::ViewSourceMut for [T; N] {
    fn view_mut(&mut self) -> ViewMut {
        slice_view_mut(self)
    }
    #[inline]
    fn contig_mut(&mut self) -> Option<(*mut u8, usize)> {
        Some((self.as_mut_ptr().cast(), N))
    }
}
impl<T: Data, const N: usize> BufferMut for [T; N] {}

macro_rules! scalar_buffer {
    ($t:ty) => {
        impl sealed::ViewSource for $t {
            fn view(&self) -> View {
                slice_view(std::slice::from_ref(self))
            }
            #[inline]
            fn contig(&self) -> Option<(*const u8, usize)> {
                Some(((self as *const $t).cast(), 1))
            }
        }
        impl Buffer for $t {
            type Item = $t;
        }
        impl sealed::ViewSourceMut for $t {
            fn view_mut(&mut self) -> ViewMut {
                slice_view_mut(std::slice::from_mut(self))
            }
            #[inline]
            fn contig_mut(&mut self) -> Option<(*mut u8, usize)> {
                Some(((self as *mut $t).cast(), 1))
            }
        }
        impl BufferMut for $t {}
    };
}
for_each_number!(scalar_buffer);
scalar_buffer!(Loc<f32>);
scalar_buffer!(Loc<f64>);
scalar_buffer!(Loc<i32>);
scalar_buffer!(Loc<i64>);

fn nd_layout(shape: &[usize], strides: &[isize], standard: bool) -> Layout {
    if standard {
        Layout::Contiguous
    } else {
        Layout::Strided {
            shape: shape.to_vec(),
            strides: strides.to_vec(),
        }
    }
}

impl<S, D> sealed::ViewSource for ndarray::ArrayBase<S, D>
where
    S: ndarray::Data,
    S::Elem: Data,
    D: ndarray::Dimension,
{
    fn view(&self) -> View {
        View {
            ptr: self.as_ptr().cast(),
            len: self.len(),
            elem: Elem::of::<S::Elem>(),
            layout: nd_layout(self.shape(), self.strides(), self.is_standard_layout()),
        }
    }
    #[inline]
    fn contig(&self) -> Option<(*const u8, usize)> {
        self.as_slice().map(|s| (s.as_ptr().cast(), s.len()))
    }
}
impl<S, D> Buffer for ndarray::ArrayBase<S, D>
where
    S: ndarray::Data,
    S::Elem: Data,
    D: ndarray::Dimension,
{
    type Item = S::Elem;
}
impl<S, D> sealed::ViewSourceMut for ndarray::ArrayBase<S, D>
where
    S: ndarray::DataMut,
    S::Elem: Data,
    D: ndarray::Dimension,
{
    #[inline]
    fn contig_mut(&mut self) -> Option<(*mut u8, usize)> {
        self.as_slice_mut().map(|s| (s.as_mut_ptr().cast(), s.len()))
    }
    fn view_mut(&mut self) -> ViewMut {
        // Taking `&mut ArrayRef` first makes shared storage (`CowArray`, `ArcArray`) unique, which may move the
        // data into a new, compact allocation with new strides: pointer and strides are read after that, from
        // the unique array, never from before it.
        let v: &mut ndarray::ArrayRef<S::Elem, D> = self;
        let layout = nd_layout(v.shape(), v.strides(), v.is_standard_layout());
        ViewMut {
            ptr: v.as_mut_ptr().cast(),
            len: v.len(),
            elem: Elem::of::<S::Elem>(),
            layout,
        }
    }
}
impl<S, D> BufferMut for ndarray::ArrayBase<S, D>
where
    S: ndarray::DataMut,
    S::Elem: Data,
    D: ndarray::Dimension,
{
}
