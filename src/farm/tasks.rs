//! [`Tasks`]: what a farm operation runs over — a count of tasks and where their inputs live.

/// The tasks of a farm operation: how many there are and where their inputs come from.
///
/// ```
/// use spmd::farm::Tasks;
///
/// let inputs = vec![1.5, 2.5];
/// let at_root = Tasks::at_root(Some(&inputs[..])); // on other ranks: Tasks::at_root(None)
/// let everywhere = Tasks::everywhere(&inputs);     // every rank holds the same inputs
/// let indices = Tasks::range(100);                // the task function gets &0, &1, ..., &99
/// # let _ = (at_root, everywhere, indices);
/// ```
pub struct Tasks<'a, T> {
    pub(super) kind: Kind<'a, T>,
}

pub(super) enum Kind<'a, T> {
    Root(Option<&'a [T]>),
    All(&'a [T]),
    Range { n: usize, make: fn(usize) -> T },
}

impl<'a, T> Tasks<'a, T> {
    /// One task per input; the inputs live at the root (`Some` there; other ranks pass `None`, and anything they
    /// pass is ignored). Each input travels, serialised, to the rank that runs it.
    pub fn at_root(inputs: Option<&'a [T]>) -> Tasks<'a, T> {
        Tasks {
            kind: Kind::Root(inputs),
        }
    }

    /// One task per input; every rank holds the same inputs (read from the same file, computed the same way), so
    /// only task indices travel.
    pub fn everywhere(inputs: &'a [T]) -> Tasks<'a, T> {
        Tasks {
            kind: Kind::All(inputs),
        }
    }
}

impl Tasks<'static, usize> {
    /// Tasks `0..n`: the task function gets the index. Only indices travel. `n` is read at the root.
    pub fn range(n: usize) -> Tasks<'static, usize> {
        Tasks {
            kind: Kind::Range { n, make: |i| i },
        }
    }
}
