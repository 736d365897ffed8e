//! The range decision against a model simple enough to be obviously right:
//! every byte a `Range` header asks for, marked one by one in a bitmap of
//! the representation. Whatever the ranges (overlapping, adjacent, out of
//! order, past the end, suffixes), the answer must be the marked bytes,
//! each once, as the fewest ascending parts; 416 exactly when nothing is
//! marked.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use tranzcast_proto::range::{Conditions, Decision, MAX_RANGES, evaluate};

#[derive(Debug, Clone)]
enum Spec {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        (0u64..300, 0u64..300).prop_map(|(a, n)| Spec::FromTo(a, a + n)),
        (0u64..300).prop_map(Spec::From),
        (0u64..300).prop_map(Spec::Suffix),
    ]
}

fn header(specs: &[Spec]) -> String {
    let parts: Vec<String> = specs
        .iter()
        .map(|s| match s {
            Spec::FromTo(a, b) => format!("{a}-{b}"),
            Spec::From(a) => format!("{a}-"),
            Spec::Suffix(n) => format!("-{n}"),
        })
        .collect();
    format!("bytes={}", parts.join(","))
}

/// Each byte asked for, per RFC 9110 section 14.1.2, one at a time.
fn model(specs: &[Spec], len: u64) -> Vec<bool> {
    let mut asked = vec![false; len as usize];
    for s in specs {
        for (i, b) in asked.iter_mut().enumerate() {
            let i = i as u64;
            *b |= match *s {
                Spec::FromTo(a, z) => a <= i && i <= z,
                Spec::From(a) => a <= i,
                Spec::Suffix(n) => n > 0 && i + n >= len,
            };
        }
    }
    asked
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_decision_sends_exactly_the_bytes_asked_for_once_in_order(
        specs in prop::collection::vec(spec(), 1..=MAX_RANGES),
        len in 0u64..400,
    ) {
        let h = header(&specs);
        let d = evaluate(&Conditions { range: Some(&h), ..Default::default() }, "\"e\"", len);
        let asked = model(&specs, len);
        match d {
            Decision::Unsatisfiable => prop_assert!(asked.iter().all(|b| !b), "416 for {} over {}", h, len),
            Decision::Partial(parts) => {
                let mut sent = vec![false; len as usize];
                for (k, p) in parts.iter().enumerate() {
                    prop_assert!(p.start < p.end && p.end <= len, "part {:?} of {} over {}", p, h, len);
                    if k > 0 {
                        // Ascending, neither overlapping nor touching: the fewest parts.
                        prop_assert!(parts[k - 1].end < p.start, "{:?} for {}", parts, h);
                    }
                    for i in p.clone() {
                        sent[i as usize] = true;
                    }
                }
                prop_assert_eq!(sent, asked, "{} over {}", h, len);
            }
            other => prop_assert!(false, "{:?} for {} over {}", other, h, len),
        }
    }

    #[test]
    fn more_ranges_than_the_cap_are_refused_and_never_half_served(
        specs in prop::collection::vec(spec(), 1..=MAX_RANGES),
        cap in 1usize..=MAX_RANGES,
    ) {
        let h = header(&specs);
        let d = evaluate(&Conditions { range: Some(&h), max_ranges: cap, ..Default::default() }, "\"e\"", 100);
        if specs.len() > cap {
            prop_assert!(matches!(d, Decision::BadRequest(_)), "{:?} for {} ranges over a cap of {}", d, specs.len(), cap);
        } else {
            prop_assert!(matches!(d, Decision::Partial(_) | Decision::Unsatisfiable), "{:?}", d);
        }
    }
}
