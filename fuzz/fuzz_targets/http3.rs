//! HTTP/3's wire as the edge's server reads it, on hostile bytes: never
//! panic; a field section decodes within its budget and, when it makes a
//! request head, one whose pseudo-header fields are in order; a Huffman
//! string that decodes encodes back to the same bytes; decoding with a memo
//! kept across inputs gives what decoding without one gives; frame rules
//! keep their order whatever the frames; the QPACK stream readers never
//! read past what they were given.
#![no_main]

use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use tranzcast_proto::http3::{self, ControlFrame, RequestFrame, RequestPhase, huffman, qpack};

thread_local! {
    static MEMO: RefCell<qpack::HuffmanMemo> = RefCell::default();
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 6 {
        0 => {
            let budget = 4096;
            let plain = qpack::decode_section(rest, budget, usize::MAX);
            let remembered = MEMO.with_borrow_mut(|m| qpack::decode_section_memo(rest, budget, usize::MAX, m));
            assert_eq!(plain, remembered, "the memo changed a decoding");
            if let Ok(fields) = plain {
                let size: u64 = fields.iter().map(|f| (f.name.len() + f.value.len()) as u64 + qpack::FIELD_OVERHEAD).sum();
                assert!(size <= budget, "{size} over the budget");
                if let Ok(head) = http3::request_head(fields) {
                    assert!(head.fields.iter().all(|f| !f.name.starts_with(b":")));
                    assert!(head.path.is_some() || &head.method[..] == b"CONNECT");
                }
            }
        }
        1 => {
            // A request stream's frames, read as the server reads them.
            let mut phase = RequestPhase::Head;
            let mut at = 0;
            let mut heads = 0;
            while let Some(h) = http3::read_frame_head(&rest[at..]) {
                match http3::request_frame(&mut phase, h, 1024) {
                    Ok(RequestFrame::Head) => {
                        heads += 1;
                        assert!(h.len <= 1024);
                    }
                    Ok(RequestFrame::Data) => assert_ne!(phase, RequestPhase::Head),
                    Ok(RequestFrame::Trailers) => {
                        assert!(h.len <= 1024);
                        let end = (at + h.head_len + h.len as usize).min(rest.len());
                        if let Ok(fields) = qpack::decode_section(&rest[at + h.head_len..end], 1024, 64) {
                            if http3::trailer_section(&fields).is_ok() {
                                assert!(fields.iter().all(|f| !f.name.starts_with(b":")));
                            }
                        }
                    }
                    Ok(RequestFrame::Skip) => {}
                    Err(_) => break,
                }
                let Some(end) = (at + h.head_len).checked_add(h.len as usize).filter(|&e| e <= rest.len()) else { break };
                at = end;
            }
            assert!(heads <= 1, "one request head per stream");
        }
        2 => {
            let mut seen = false;
            let mut at = 0;
            while let Some(h) = http3::read_frame_head(&rest[at..]) {
                match http3::control_frame(&mut seen, h) {
                    Ok(ControlFrame::Settings) => {
                        let end = (at + h.head_len + h.len as usize).min(rest.len());
                        let _ = http3::read_settings(&rest[at + h.head_len..end]);
                    }
                    Ok(ControlFrame::Ignore | ControlFrame::Skip) => assert!(seen),
                    Err(_) => break,
                }
                let Some(end) = (at + h.head_len).checked_add(h.len as usize).filter(|&e| e <= rest.len()) else { break };
                at = end;
            }
        }
        4 => {
            if let Ok(n) = qpack::read_encoder_stream(rest) {
                assert!(n <= rest.len());
            }
        }
        5 => {
            if let Ok(n) = qpack::read_decoder_stream(rest) {
                assert!(n <= rest.len());
            }
        }
        _ => {
            let mut out = Vec::new();
            if huffman::decode(rest, &mut out).is_ok() {
                let mut again = Vec::new();
                huffman::encode(&out, &mut again);
                assert_eq!(again, rest);
            }
        }
    }
});
