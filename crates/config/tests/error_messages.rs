//! The configuration error messages, exactly: a file in the README's style with many mistakes,
//! compared with the report checked in beside it (`golden/*.expected`).
//!
//! After a deliberate change to the messages, regenerate the expected report with
//! `STRICTMX_BLESS=1 cargo test -p strictmx-config --test error_messages` and review the diff.

use std::path::Path;

use strictmx_config::Config;

#[test]
fn a_readme_style_file_with_many_mistakes_gets_the_exact_expected_report() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let text = std::fs::read_to_string(golden.join("readme-style-mistakes.toml"))
        .expect("read the sample");
    // A relative name keeps the report the same wherever the repository is; relative paths in
    // the file resolve from the test's working directory (the crate), where they do not exist.
    let errors = Config::parse(&text, Path::new("readme-style-mistakes.toml"))
        .expect_err("the sample has mistakes");
    let report = format!("{errors}\n");
    let expected_path = golden.join("readme-style-mistakes.expected");
    if std::env::var_os("STRICTMX_BLESS").is_some() {
        std::fs::write(&expected_path, &report).expect("write the expected report");
    }
    let expected = std::fs::read_to_string(&expected_path).expect("read the expected report");
    assert_eq!(
        report,
        expected,
        "the report differs from {}",
        expected_path.display()
    );
}
