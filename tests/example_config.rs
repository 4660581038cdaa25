//! `chatmesh.example.toml` (written by ops/example-config) stays true: it names every
//! setting, states every default, and passes `--check-config` for each command.
//! `CHATMESH_PRINT_DEFAULTS=1 cargo test --test example_config -- --nocapture` prints the
//! defaults ops/example-config needs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chatmesh::Config;
use serde_json::Value;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/chatmesh.example.toml");

/// (section, key) of every setting, in the JSON of the defaults.
fn settings(v: &Value, section: &str, out: &mut Vec<(String, String)>) {
    let Value::Object(map) = v else { return };
    for (key, value) in map {
        let path = if section.is_empty() {
            key.clone()
        } else {
            format!("{section}.{key}")
        };
        match value {
            // A section of its own (`[gateway.limits]`), or a table of names (retention rooms).
            Value::Object(inner) if !inner.is_empty() || section.is_empty() => {
                settings(value, &path, out)
            }
            _ => out.push((section.to_owned(), key.clone())),
        }
    }
}

#[test]
fn the_example_names_every_setting_with_its_default() {
    let defaults = serde_json::to_value(Config::default()).unwrap();
    if std::env::var_os("CHATMESH_PRINT_DEFAULTS").is_some() {
        println!("{}", serde_json::to_string_pretty(&defaults).unwrap());
    }
    let loaded = Config::load(Some(Path::new(EXAMPLE))).expect("the example loads");
    assert_eq!(
        serde_json::to_value(loaded).unwrap(),
        defaults,
        "the example states the defaults (regenerate it with ops/example-config)"
    );
    // Every setting appears in its section, set or (no default) commented out.
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" =") {
            keys.entry(section.clone())
                .or_default()
                .push(key.to_owned());
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(": a table") {
            keys.entry(section.clone())
                .or_default()
                .push(key.to_owned());
        }
    }
    let mut all = Vec::new();
    settings(&defaults, "", &mut all);
    let missing: Vec<String> = all
        .iter()
        .filter(|(s, k)| !keys.get(s).is_some_and(|ks| ks.contains(k)))
        .map(|(s, k)| format!("{s}.{k}"))
        .collect();
    assert!(
        missing.is_empty(),
        "not in chatmesh.example.toml: {missing:?}"
    );
    assert!(all.len() > 80, "only {} settings found", all.len());
}

#[test]
fn the_example_passes_check_config_for_each_command() {
    for command in ["up", "gateway", "worker"] {
        let out = Command::new(env!("CARGO_BIN_EXE_chatmesh"))
            .args(["--config", EXAMPLE, "--check-config", command])
            .env_remove("CHATMESH_CONFIG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        if command == "gateway" {
            // A standalone gateway needs a secret (or JWKS) shared with the others: the
            // example leaves it to the operator, and the check says so.
            assert!(
                !out.status.success() && text.contains("jwt_secret"),
                "{text}"
            );
        } else {
            assert!(out.status.success(), "{command}: {text}");
        }
    }
}

/// The Kubernetes ConfigMap's chatmesh.toml (the Helm chart's rendering in deploy/k8s) is
/// checked against the example: it loads, and every key it sets is a setting of the
/// example's, in the same section.
#[test]
fn the_kubernetes_config_uses_only_settings_of_the_example() {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/k8s/chatmesh.yaml"
    ))
    .unwrap();
    let body = yaml
        .split("chatmesh.toml: |\n")
        .nth(1)
        .expect("a chatmesh.toml key");
    let toml: String = body
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chatmesh.toml");
    std::fs::write(&path, &toml).unwrap();
    Config::load(Some(&path)).expect("the ConfigMap's chatmesh.toml loads");
    let example = std::fs::read_to_string(EXAMPLE).unwrap();
    let mut section = String::new();
    let mut known = std::collections::BTreeSet::new();
    for line in example.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.trim_start_matches("# ").split_once(" =") {
            known.insert(format!("{section}.{key}"));
        }
    }
    let mut section = String::new();
    let mut unknown = Vec::new();
    for line in toml.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if !line.starts_with('#') {
            if let Some((key, _)) = line.split_once('=') {
                let key = format!("{section}.{}", key.trim());
                if !known.contains(&key) {
                    unknown.push(key);
                }
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "not settings of the example: {unknown:?}"
    );
}
