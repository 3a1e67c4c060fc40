//! The committed C header is the one cbindgen generates from `src/ffi`
//! (into `OUT_DIR`, by build.rs). With `QM_UPDATE_HEADER=1` (what
//! `make header` sets) the committed copy is brought up to date instead.

const GENERATED: &str = include_str!(concat!(env!("OUT_DIR"), "/qemu_machine.h"));

#[test]
fn committed_header_is_the_generated_one() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/qemu_machine.h");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed == GENERATED {
        return;
    }
    if std::env::var_os("QM_UPDATE_HEADER").is_some() {
        std::fs::write(path, GENERATED).expect("write include/qemu_machine.h");
        return;
    }
    panic!(
        "include/qemu_machine.h differs from the header generated from src/ffi: \
         run `make header` and commit it"
    );
}
