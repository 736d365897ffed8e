//! What a session needs from the peer service its client runs beside it
//! (Fig. 3 and 4): a store to read first and to keep what is played. The
//! client owns this small trait so that an app embedding the client builds
//! no store: `tranzcast-edge`'s `EdgeServer` (role `peer`) implements it,
//! and the binary wires one in with [`crate::Session::attach_local`].

use bytes::Bytes;
use tranzcast_proto::BlobAddress;

/// This client's own peer service, as its session uses it. Every method may
/// block briefly (a store read or write): the session calls them off the
/// async threads.
pub trait PeerService: Send + Sync + 'static {
    /// Its name in the cluster: the session never uses it as a source.
    fn name(&self) -> &str;

    /// Learns a title's signed manifest (checked against the origin's key),
    /// so that its pulse tells other viewers which segments it holds.
    fn keep_manifest(&self, signed_manifest: &[u8]) -> Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// A blob it holds, verified against its address (a segment the origin
    /// pre-cast here, or one played before).
    fn local_blob(&self, address: &BlobAddress) -> Option<Bytes>;

    /// Keeps a blob the session verified, for other viewers.
    fn keep_blob(&self, bytes: &[u8]);
}
