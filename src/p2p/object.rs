//! Point-to-point calls for objects: any serde value, sent as a header message (with the bincode bytes) followed
//! by its out-of-band arrays, and received after a matched probe (see [`crate::p2p`]).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Peer, Source, Status, Tag, TagMatch, recv_object};
use crate::codec;
use crate::comm::Comm;
use crate::error::{ErrorKind, Result, fail};
use crate::sys::{Desc, p2p::Mode};

impl<'u> Comm<'u> {
    /// Sends any serde value to `dest` with `tag`. Large `Vec`s of numbers and [`crate::Oob`] fields travel
    /// zero-copy beside the serialised rest.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 0 {
    ///     world.send_obj(1, 0, &("mesh", vec![1u32, 2, 3]))?;
    /// } else if world.rank() == 1 {
    ///     let ((name, ids), _): ((String, Vec<u32>), _) = world.recv_obj(0, 0)?;
    ///     assert_eq!(name, "mesh");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Encode`] if serde fails; [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`],
    /// [`ErrorKind::Mpi`].
    #[track_caller]
    pub fn send_obj<T: Serialize + ?Sized>(&self, dest: impl Into<Peer>, tag: Tag, value: &T) -> Result<()> {
        let _wait = self.watch("send_obj");
        self.send_obj_mode("send_obj", dest.into(), tag, value, Mode::Standard)
    }

    /// Synchronous object send: returns once the receiver has started receiving.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// if world.rank() == 0 {
    ///     world.ssend_obj(1, 0, &"done".to_string())?;
    /// } else if world.rank() == 1 {
    ///     let (s, _): (String, _) = world.recv_obj(0, 0)?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::send_obj`].
    #[track_caller]
    pub fn ssend_obj<T: Serialize + ?Sized>(&self, dest: impl Into<Peer>, tag: Tag, value: &T) -> Result<()> {
        let _wait = self.watch("ssend_obj");
        self.send_obj_mode("ssend_obj", dest.into(), tag, value, Mode::Synchronous)
    }

    fn send_obj_mode<T: Serialize + ?Sized>(
        &self,
        op: &str,
        dest: Peer,
        tag: Tag,
        value: &T,
        mode: Mode,
    ) -> Result<()> {
        let Some(d) = self.dest_arg(op, dest, tag)? else {
            return Ok(());
        };
        let enc = codec::encode(value)?;
        let r = (|| {
            self.send_desc(op, &Desc::bytes(&enc.bytes)?, d, tag, mode)?;
            for part in &enc.oob {
                self.send_desc(op, &Desc::of(&part.view())?, d, tag, Mode::Standard)?;
            }
            Ok(())
        })();
        codec::recycle_send(enc.bytes);
        r
    }

    /// Receives an object of any size.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// use std::collections::BTreeMap;
    /// if world.rank() == 1 {
    ///     let (m, st): (BTreeMap<u32, String>, _) = world.recv_obj(spmd::ANY_SOURCE, spmd::ANY_TAG)?;
    ///     println!("{} entries from rank {}", m.len(), st.source());
    /// } else if world.rank() == 0 {
    ///     world.send_obj(1, 9, &BTreeMap::from([(1u32, "one".to_string())]))?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ErrorKind::Decode`] if the bytes are not a `T`; [`ErrorKind::WrongFamily`] if a buffer message arrived
    /// (it is consumed); [`ErrorKind::InvalidArgument`] for a receive from no process (there is no value);
    /// [`ErrorKind::InvalidRank`], [`ErrorKind::InvalidTag`], [`ErrorKind::Mpi`].
    #[track_caller]
    pub fn recv_obj<T: DeserializeOwned>(
        &self,
        source: impl Into<Source>,
        tag: impl Into<TagMatch>,
    ) -> Result<(T, Status)> {
        let _wait = self.watch("recv_obj");
        let Some((s, t)) = self.match_args("recv_obj", source.into(), tag.into())? else {
            return fail(
                ErrorKind::InvalidArgument,
                "recv_obj: no value comes from no process (Source::Null)",
            );
        };
        recv_object(self, "recv_obj", s, t)
    }

    /// Sends an object to `dest` and receives one from `source` at the same time.
    ///
    /// ```no_run
    /// # fn main() -> spmd::Result<()> {
    /// # let universe = spmd::init()?; let world = universe.world();
    /// let (rank, size) = (world.rank(), world.size());
    /// let (got, _): (String, _) =
    ///     world.sendrecv_obj((rank + 1) % size, 0, &format!("from {rank}"), (rank + size - 1) % size, 0)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Comm::send_obj`] and [`Comm::recv_obj`].
    #[track_caller]
    pub fn sendrecv_obj<S: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        dest: impl Into<Peer>,
        send_tag: Tag,
        value: &S,
        source: impl Into<Source>,
        recv_tag: impl Into<TagMatch>,
    ) -> Result<(R, Status)> {
        let _wait = self.watch("sendrecv_obj");
        let req = self.isend_obj(dest, send_tag, value)?;
        let r = self.recv_obj(source, recv_tag);
        let w = crate::request::Completion::wait(req);
        let out = r?;
        w?;
        Ok(out)
    }
}
