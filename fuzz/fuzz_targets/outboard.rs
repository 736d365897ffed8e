//! Outboard decoding, root merging, streamed group verification and the
//! verified fetch around them (`proto::fetch`): never panic, and never pass
//! on bytes that are not the blob's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::BlobAddress;
use tranzcast_proto::fetch;
use tranzcast_proto::outboard::{GroupVerifier, Outboard};

/// Feeds `stream` to `push` in chunks of `size` bytes (at least one) until it
/// refuses one, then checks that every group it passed on (offset, bytes) is
/// `blob`'s own.
fn push_checked<E>(blob: &[u8], stream: &[u8], size: u8, mut push: impl FnMut(&[u8], &mut Vec<(u64, Vec<u8>)>) -> Result<(), E>) {
    let mut passed = Vec::new();
    for chunk in stream.chunks(usize::from(size).max(1)) {
        if push(chunk, &mut passed).is_err() {
            break;
        }
    }
    for (off, g) in passed {
        assert_eq!(&blob[off as usize..off as usize + g.len()], &g[..], "unverified bytes passed on");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(ob) = Outboard::decode(data) {
        assert_eq!(ob.encode(), data);
        let _ = ob.root();
        let _ = ob.verify_group(0, &data[..data.len().min(16384)]);
    }
    // A real blob's outboard against hostile stream bytes, in hostile chunks.
    if data.len() < 2 {
        return;
    }
    let blob: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let (addr, ob) = Outboard::compute(&blob);
    let Ok(mut v) = GroupVerifier::new(addr, ob) else { panic!("a real outboard was refused") };
    let _ = v.skip_to(u64::from(data[0]) * 1024);
    push_checked(&blob, &data[1..], data[1], |chunk, passed| v.push(chunk, |off, g| passed.push((off, g.to_vec()))));
    let _ = v.finish();
    let _ = BlobAddress::of(data);
    // The verified fetch around it: a hostile status, outboard and body.
    let (real, addr) = (Outboard::compute(&blob).1.encode(), Outboard::compute(&blob).0);
    let _ = fetch::outboard(&addr, u16::from(data[0]) * 3, data);
    if let Ok(v) = fetch::outboard(&addr, 200, &real) {
        let to = (data[1] & 1 == 1).then(|| u64::from(data[1]) * 300);
        if let Ok(mut f) = fetch::BodyFetch::new(v, u64::from(data[0] % 3) * 16384, to)
            && f.answered([200, 206, 404, 500][usize::from(data[1] % 4)]).is_ok()
        {
            push_checked(&blob, &data[2..], data[0], |chunk, got| f.push(chunk, |off, g| got.push((off, g.to_vec()))));
            let _ = f.finish();
        }
    }
});
