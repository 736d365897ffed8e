//! RFC 9110 range and conditional semantics on a node's blobs, byte-exact,
//! over real HTTP/1.1, HTTP/2 (reqwest) and HTTP/3 (quinn + h3) with TLS.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;

use tranzcast_config::{EdgeConfig, Layers, OriginConfig};
use tranzcast_edge::{EdgeServer, EdgeTls};
use tranzcast_net::client::{H3Client, https, https_h1};
use tranzcast_origin::Origin;
use tranzcast_proto::BlobAddress;
use tranzcast_testkit::{Client, check_ranges, h};

const CLUSTER: &str = "test-cluster-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_range_and_conditional_case_on_h1_h2_h3() {
    let dir = tempfile::tempdir().unwrap();
    let ocfg: OriginConfig = Layers::new("origin")
        .overrides(&[
            format!("data_dir={}", dir.path().join("origin").display()),
            "storefront_token=test-storefront-token-0123456789".into(),
            format!("cluster_token={CLUSTER}"),
            "member_key=test-member-key-0123456789-0123456789".into(),
            "listen.https=127.0.0.1:0".into(),
        ])
        .unwrap()
        .build()
        .unwrap();
    let origin = Origin::start(ocfg).await.unwrap();
    let ncfg: EdgeConfig = Layers::new("edge")
        .overrides(&[
            "role=node".into(),
            "name=node-r".into(),
            format!("data_dir={}", dir.path().join("node").display()),
            format!("origin=https://localhost:{}", origin.https_addr().port()),
            format!("cluster_token={CLUSTER}"),
            format!("member_credential={}", tranzcast_testkit::member_credential("node-r", "node")),
            "listen.https=127.0.0.1:0".into(),
            // Range semantics on an arbitrary blob; certificate checks are tested in tiers.rs.
            "require_certificate=false".into(),
        ])
        .unwrap()
        .build()
        .unwrap();
    let tls = EdgeTls::from_config(&ncfg, &origin.ca_dir()).unwrap();
    let node = EdgeServer::start(ncfg, tls.clone()).await.unwrap();
    let port = node.https_addr().port();
    let base = format!("https://localhost:{port}");

    let blob: Vec<u8> = (0..(1u32 << 20) + 3).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let addr = BlobAddress::of(&blob);
    let ca = tls.ca_pem.as_bytes();
    let r = https(ca).unwrap().put(format!("{base}/v1/blobs/{addr}")).bearer_auth(CLUSTER).body(blob.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let url = format!("{base}/v1/blobs/{addr}");
    let etag = format!("\"{addr}\"");
    let len = blob.len();

    let clients = [
        ("h1", Client::H1(https_h1(ca).unwrap())),
        ("h2", Client::H2(https(ca).unwrap())),
        ("h3", Client::H3(H3Client::connect(SocketAddr::from(([127, 0, 0, 1], port)), "localhost", ca).await.unwrap())),
    ];
    for (name, c) in &clients {
        // Whole, with the caching headers.
        let (s, hd, b) = c.get("GET", &url, &[]).await;
        assert_eq!((s, b.len()), (200, len), "{name}");
        assert_eq!(&b[..], &blob[..], "{name}");
        assert_eq!(h(&hd, "etag"), etag);
        assert_eq!(h(&hd, "accept-ranges"), "bytes");
        assert_eq!(h(&hd, "cache-control"), "public, max-age=31536000, immutable");
        if *name != "h3" {
            assert_eq!(h(&hd, "alt-svc"), format!("h3=\":{port}\"; ma=86400"), "{name}: Alt-Svc on TCP");
        }
        // Single, suffix and open-ended ranges; several as multipart/byteranges;
        // If-Range, If-None-Match; unsatisfiable (416), malformed (400); HEAD.
        let singles = [
            ("bytes=0-99", 0, 100),
            ("bytes=-100", len - 100, len),
            ("bytes=1000-", 1000, len),
            ("bytes=5-5", 5, 6),
            ("bytes=1048000-9999999", 1_048_000, len),
        ];
        check_ranges(c, name, &url, &blob, &etag, &singles, ("bytes=0-9, 20-29, -5", [(0, 10), (20, 30), (len - 5, len)])).await;
        // Unknown and malformed addresses.
        let (s, _, _) = c.get("GET", &format!("{base}/v1/blobs/{}", BlobAddress::of(b"nope")), &[]).await;
        assert_eq!(s, 404, "{name}");
        let (s, _, _) = c.get("GET", &format!("{base}/v1/blobs/not-hex"), &[]).await;
        assert_eq!(s, 400, "{name}");
    }
    node.shutdown().await;
    origin.shutdown().await;
}
