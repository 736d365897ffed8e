//! Edges and nodes: HTTP/3 and HTTP/1.1/2 range serving of blobs, tiered
//! misses with coalescing, demand-driven mirroring, pulses and certificate
//! checks.
//!
//! A shell until issue 4 fills it.
