//! proto/ → Rust (tonic + prost), with a vendored protoc so that no system install is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("tierdex_descriptor.bin"))
        .compile_with_config(config, &["proto/tierdex/v1/tierdex.proto"], &["proto"])?;
    Ok(())
}
