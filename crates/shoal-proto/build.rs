//! Compiles `proto/shoal/v1/*.proto` (and the KPL's aggregation message) with a
//! vendored `protoc`, so a fresh machine needs no system protobuf compiler.

const PROTOS: [&str; 7] = [
    "shoal/v1/streams",
    "shoal/v1/records",
    "shoal/v1/cluster",
    "shoal/v1/consumers",
    "shoal/v1/firehose",
    "shoal/v1/raft",
    "kpl/aggregation",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; the variable is read by the
    // protoc invocation below.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = PROTOS.map(|name| root.join(format!("{name}.proto")));
    // A read's record data is the stored record's shared buffer, handed to the
    // encoder without a copy.
    tonic_prost_build::configure()
        // prost's codec, with a buffer sized for the whole message (src/codec.rs).
        .codec_path("crate::codec::SizedCodec")
        .bytes(".shoal.v1.StoredRecordEntry.data")
        // A written record's data is sliced out of the gRPC frame's buffer, not
        // copied, and a client's retry clones a reference count, not the bytes.
        .bytes(".shoal.v1.RecordEntry.data")
        // A Raft message is sliced, not copied, into the entries it carries.
        .bytes(".shoal.v1.RaftMessage.payload")
        .compile_protos(&files, std::slice::from_ref(&root))?;
    // Relative to this package, so a target directory shared by several
    // checkouts reruns the script when *this* checkout's protos change.
    for name in PROTOS {
        println!("cargo:rerun-if-changed=../../proto/{name}.proto");
    }
    Ok(())
}
