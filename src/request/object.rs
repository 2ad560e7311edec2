//! Non-blocking object operations: [`SendRequest`] owns the serialised bytes (and shares the out-of-band
//! arrays) until the send completes; [`RecvRequest`] waits in the receive engine and decodes on completion.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Completion, engine, poll, wait_raw};
use crate::codec;
use crate::comm::Comm;
use crate::error::{ErrorKind, Result, fail};
use crate::p2p::{Peer, Source, Status, Tag, TagMatch};
use crate::runtime::Universe;
use crate::sys::{Desc, RawRequest, p2p::Mode};

/// A non-blocking object send ([`Comm::isend_obj`]): owns the serialised bytes until completion. Dropping it waits
/// for the send to complete.
pub struct SendRequest<'u> {
    // Field order matters: the requests (which wait on drop) go before the memory they read.
    reqs: Vec<RawRequest>,
    bytes: Vec<u8>,
    _parts: Vec<codec::Part<'static>>,
    op: &'static str,
    _u: PhantomData<&'u Universe>,
}

impl poll::Poll for SendRequest<'_> {
    fn poll(&mut self) -> Result<bool> {
        let mut all = true;
        for r in self.reqs.iter_mut() {
            all &= r.test().map_err(|c| c.error(self.op))?.is_some();
        }
        Ok(all)
    }
}

impl Drop for SendRequest<'_> {
    /// Waits for the send as [`Completion::wait`] does, keeping this rank's pending receives moving (a bare
    /// `MPI_Wait` would not, and a peer blocked sending to one of them would then never get to receive this).
    fn drop(&mut self) {
        for r in std::mem::take(&mut self.reqs) {
            let _ = wait_raw(r, self.op);
        }
    }
}

impl Completion for SendRequest<'_> {
    type Output = ();

    #[track_caller]
    fn wait(mut self) -> Result<()> {
        let _wait = crate::runtime::watch::enter("wait (isend_obj)", 0, 0);
        // One at a time from the front: after an error the others stay, and the drop waits for them.
        while !self.reqs.is_empty() {
            let r = self.reqs.remove(0);
            wait_raw(r, self.op)?;
        }
        codec::recycle_send(std::mem::take(&mut self.bytes));
        Ok(())
    }
}

/// A non-blocking object receive ([`Comm::irecv_obj`]): completes with the value and its [`Status`].
///
/// Dropping it before completion detaches it: a message that matches it is still received (and discarded).
pub struct RecvRequest<'u, T> {
    id: engine::Id,
    taken: bool,
    _t: PhantomData<fn() -> T>,
    _u: PhantomData<&'u Universe>,
}

impl<T> RecvRequest<'_, T> {
    /// Cancels the receive if no message has matched it yet (`true`).
    pub fn cancel(&self) -> bool {
        engine::cancel(self.id)
    }
}

impl<T> poll::Poll for RecvRequest<'_, T> {
    fn poll(&mut self) -> Result<bool> {
        Ok(engine::is_done(self.id))
    }
}

impl<T: DeserializeOwned> Completion for RecvRequest<'_, T> {
    type Output = (T, Status);

    #[track_caller]
    fn wait(mut self) -> Result<(T, Status)> {
        let _wait = crate::runtime::watch::enter("wait (irecv_obj)", 0, 0);
        self.taken = true;
        match engine::wait(self.id)? {
            engine::Outcome::Obj { bytes, parts, status } => {
                let context = || format!("irecv_obj from rank {} (tag {})", status.source(), status.tag());
                let v = codec::decode::<T>(&bytes, Box::new(codec::BytesOob { arrays: parts }), &context)?;
                Ok((v, status))
            }
            engine::Outcome::Buf(_) => unreachable!("object receives yield objects"),
        }
    }
}

impl<T> Drop for RecvRequest<'_, T> {
    fn drop(&mut self) {
        if !self.taken {
            engine::detach(self.id);
        }
    }
}

impl<'u> Comm<'u> {
    /// Starts sending an object: it is serialised now (out-of-band arrays are shared, not copied), so `value` is
    /// free again when this returns.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let peer = (world.rank() + 1) % world.size();
    /// let req = world.isend_obj(peer, 0, &vec!["a".to_string(), "b".to_string()])?;
    /// let (got, _): (Vec<String>, _) = world.recv_obj(spmd::ANY_SOURCE, 0)?;
    /// spmd::request::Completion::wait(req)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::send_obj`].
    pub fn isend_obj<T: Serialize + ?Sized>(
        &self,
        dest: impl Into<Peer>,
        tag: Tag,
        value: &T,
    ) -> Result<SendRequest<'u>> {
        let op = "isend_obj";
        let empty = |bytes| SendRequest {
            reqs: Vec::new(),
            bytes,
            _parts: Vec::new(),
            op,
            _u: PhantomData,
        };
        let Some(d) = self.dest_arg(op, dest.into(), tag)? else {
            return Ok(empty(Vec::new()));
        };
        let enc = codec::encode_owned(value)?;
        let ctx = || format!("{op} to rank {d} (tag {tag})");
        let mut reqs = Vec::with_capacity(1 + enc.oob.len());
        reqs.push(
            self.inner
                .raw
                .isend(&Desc::bytes(&enc.bytes)?, d, tag, Mode::Standard)
                .map_err(|c| c.error(&ctx()))?,
        );
        for part in &enc.oob {
            reqs.push(
                self.inner
                    .raw
                    .isend(&Desc::of(&part.view())?, d, tag, Mode::Standard)
                    .map_err(|c| c.error(&ctx()))?,
            );
        }
        Ok(SendRequest {
            reqs,
            bytes: enc.bytes,
            _parts: enc.oob,
            op,
            _u: PhantomData,
        })
    }

    /// Starts receiving an object of type `T` of any size.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use spmd::request::Completion;
    /// let req = world.irecv_obj::<(u32, String)>(spmd::ANY_SOURCE, 4)?;
    /// world.send_obj((world.rank() + 1) % world.size(), 4, &(7u32, "seven".to_string()))?;
    /// let ((n, name), st) = req.wait()?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::InvalidArgument`] for no process now;
    /// decode, wrong-family and MPI errors on completion.
    pub fn irecv_obj<T: DeserializeOwned>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<RecvRequest<'u, T>> {
        let op = "irecv_obj";
        let Some((s, t)) = self.match_args(op, source.into(), tag.into())? else {
            return fail(
                ErrorKind::InvalidArgument,
                "irecv_obj: no value comes from no process (Source::Null)",
            );
        };
        let id = engine::start(std::sync::Arc::clone(&self.inner), op, s, t, engine::Target::Obj);
        Ok(RecvRequest {
            id,
            taken: false,
            _t: PhantomData,
            _u: PhantomData,
        })
    }
}
