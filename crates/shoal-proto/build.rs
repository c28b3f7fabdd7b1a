//! Compiles `proto/shoal/v1/*.proto` with a vendored `protoc`, so a fresh machine
//! needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; the variable is read by the
    // protoc invocation below.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = ["streams.proto", "records.proto", "cluster.proto", "consumers.proto", "raft.proto"]
        .map(|f| root.join("shoal/v1").join(f));
    tonic_prost_build::configure().compile_protos(&files, std::slice::from_ref(&root))?;
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    Ok(())
}
