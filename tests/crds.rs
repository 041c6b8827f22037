//! The checked-in CRDs must match the Rust types; run `make crds` after changing them.

#[test]
fn checked_in_crds_match_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/crds.yaml");
    let checked_in = std::fs::read_to_string(path).expect("crds/crds.yaml is readable");
    let generated = y360_avatar_operator::crd::render_all().expect("CRDs render");
    assert!(
        checked_in == generated,
        "crds/crds.yaml differs from the CRDs generated from the code; run `make crds`"
    );
}
