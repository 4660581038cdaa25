//! Checking `[files]` at start (`--check-config`): every problem at once, as
//! `files.<key>: why`. A URL is opened (not contacted) to find a bad scheme or option.

use crate::config::{FilesConfig, MIN_UPLOAD_BYTES_PER_SEC};

/// Slack of `upload_timeout_secs` beyond the largest file at the minimum rate (covers a
/// gateway's idle timeout and the store's last part).
const UPLOAD_SLACK_SECS: u64 = 300;

impl FilesConfig {
    /// Everything wrong with this config, as `files.<key>: why`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        if self.url.is_some() {
            if let Err(e) = crate::store::FileStore::open(self) {
                // The error names files.url; its sources say why.
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    text.push_str(&format!(": {s}"));
                    source = s.source();
                }
                out.push(text);
            }
        }
        if self.max_file_bytes == 0 {
            out.push("files.max_file_bytes must be at least 1".into());
        }
        if !(1..=7 * 24 * 3600).contains(&self.redirect_secs) {
            out.push("files.redirect_secs must be between 1 and 604800 (7 days)".into());
        }
        if self.redirect && self.url.as_deref().is_none_or(|u| !supports_presign(u)) {
            out.push("files.redirect needs an s3://, az:// or gs:// url".into());
        }
        if !(1..=3600 * 24 * 7).contains(&self.sweep_interval_secs) {
            out.push("files.sweep_interval_secs must be between 1 and 604800".into());
        }
        let slowest = self.max_file_bytes / MIN_UPLOAD_BYTES_PER_SEC + UPLOAD_SLACK_SECS;
        if self.upload_timeout_secs < slowest {
            out.push(format!(
                "files.upload_timeout_secs ({}) must be at least {slowest}: max_file_bytes at \
                 the slowest upload rate allowed ({MIN_UPLOAD_BYTES_PER_SEC} bytes a second) \
                 plus {UPLOAD_SLACK_SECS} s, or the sweeper removes uploads still arriving",
                self.upload_timeout_secs
            ));
        }
        if !(1..=100_000).contains(&self.uploads_per_address) {
            out.push("files.uploads_per_address must be between 1 and 100000".into());
        }
        if !(1..=100_000).contains(&self.upload_starts_per_minute) {
            out.push("files.upload_starts_per_minute must be between 1 and 100000".into());
        }
        if !(1..=100_000).contains(&self.upload_start_burst) {
            out.push("files.upload_start_burst must be between 1 and 100000".into());
        }
        if !(1..=64).contains(&self.thumbnail_concurrency) {
            out.push("files.thumbnail_concurrency must be between 1 and 64".into());
        }
        if !(1..=100_000).contains(&self.thumbnail_queue) {
            out.push("files.thumbnail_queue must be between 1 and 100000".into());
        }
        if !(1..=self.thumbnail_queue.max(1)).contains(&self.thumbnail_queue_per_user) {
            out.push(
                "files.thumbnail_queue_per_user must be between 1 and files.thumbnail_queue".into(),
            );
        }
        out
    }
}

fn supports_presign(url: &str) -> bool {
    [
        "s3://", "s3a://", "az://", "azure://", "abfs://", "abfss://", "gs://",
    ]
    .iter()
    .any(|p| url.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sound() {
        assert!(FilesConfig::default().problems().is_empty());
    }

    #[test]
    fn a_users_share_of_the_thumbnail_queue_fits_in_it() {
        for per_user in [0, 257] {
            let cfg = FilesConfig {
                thumbnail_queue_per_user: per_user,
                ..FilesConfig::default()
            };
            assert!(
                cfg.problems().iter().any(|p| p.contains("per_user")),
                "{per_user}"
            );
        }
    }

    #[test]
    fn upload_starts_need_a_rate_and_a_burst() {
        let cfg = FilesConfig {
            upload_starts_per_minute: 0,
            upload_start_burst: 0,
            ..FilesConfig::default()
        };
        let problems = cfg.problems();
        assert!(problems
            .iter()
            .any(|p| p.contains("upload_starts_per_minute")));
        assert!(problems.iter().any(|p| p.contains("upload_start_burst")));
    }

    /// An upload of the largest file at the slowest allowed rate must end before the
    /// sweeper takes it for abandoned.
    #[test]
    fn the_upload_timeout_leaves_the_largest_file_time_to_arrive() {
        let cfg = FilesConfig {
            max_file_bytes: 2 * 1024 * 1024 * 1024,
            ..FilesConfig::default()
        };
        let problems = cfg.problems();
        assert!(
            problems
                .iter()
                .any(|p| p.contains("upload_timeout_secs (7200) must be at least 131372")),
            "{problems:?}"
        );
        let cfg = FilesConfig {
            upload_timeout_secs: 131_372,
            ..cfg
        };
        assert!(cfg.problems().is_empty(), "{:?}", cfg.problems());
    }

    #[test]
    fn redirect_needs_a_cloud_store() {
        let cfg = FilesConfig {
            redirect: true,
            ..FilesConfig::default()
        };
        assert!(cfg.problems().iter().any(|p| p.contains("redirect")));
    }

    #[test]
    fn a_bad_url_is_named() {
        let cfg = FilesConfig {
            url: Some("ftp://example.invalid/x".into()),
            ..FilesConfig::default()
        };
        let problems = cfg.problems();
        assert!(
            problems.iter().any(|p| p.contains("ftp://")),
            "{problems:?}"
        );
    }
}
