//! The security promises (docs/security.md) name the tests that keep them: each named test must exist, in
//! the file named, so a promise can never point at a test that was renamed or removed.

use regex::Regex;

#[test]
fn every_security_promise_names_a_test_that_exists() {
    let doc = include_str!("../docs/security.md");
    let start = doc
        .find("## Security promises")
        .expect("docs/security.md has a Security promises section");
    let section = &doc[start..];
    let end = section[4..]
        .find("\n#")
        .map(|i| i + 4)
        .unwrap_or(section.len());
    let section = &section[..end];
    let cite = Regex::new(r"`(tests/[a-z_]+\.rs|src/[a-z_/]+\.rs)`: ((?:`[a-z0-9_]+`(?:, )?)+)")
        .expect("regex");
    let name = Regex::new(r"`([a-z0-9_]+)`").expect("regex");
    let mut checked = 0;
    let mut missing = vec![];
    for row in section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("| ---"))
    {
        let cites: Vec<_> = cite.captures_iter(row).collect();
        if row.starts_with("| promise") {
            continue;
        }
        assert!(!cites.is_empty(), "a promise without a test: {row}");
        for c in cites {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&c[1]);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (cited in: {row})", path.display()));
            for n in name.captures_iter(&c[2]) {
                checked += 1;
                if !text.contains(&format!("fn {}(", &n[1])) {
                    missing.push(format!("{}: {}", &c[1], &n[1]));
                }
            }
        }
    }
    assert!(missing.is_empty(), "tests cited but not found: {missing:?}");
    assert!(checked >= 4, "only {checked} tests cited");
}
