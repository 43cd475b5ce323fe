//! The canary's settings: its own `--help`, `CANARY_*` variables from the environment and
//! `.env` (flags first), and a bad value refused at once, naming it.

use std::time::Duration;

use super::canary_command;
use crate::process::{canary_settings, prodsentinel, temp_dir};

#[tokio::test]
async fn its_help_lists_every_setting_the_services_help_names_it_and_env_example_documents_them() {
    let dir = temp_dir();
    let output = canary_command(&dir).arg("--help").output().await.unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    let settings = canary_settings();
    assert!(settings.len() >= 25, "{settings:?}");
    for setting in &settings {
        assert!(setting.starts_with("CANARY_"), "{setting} would clash with the service's settings");
        assert!(help.contains(setting.as_str()), "canary --help should mention {setting}");
    }
    assert!(!help.contains("DATABASE_URL"), "the service's settings are not the canary's");
    let service = prodsentinel(&dir).arg("--help").output().await.unwrap();
    assert!(String::from_utf8_lossy(&service.stdout).contains("canary"), "the subcommand is listed");
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    for setting in &settings {
        assert!(example.contains(&format!("{setting}=")), ".env.example should list {setting}");
    }
}

#[tokio::test]
async fn a_bad_value_exits_2_naming_it_and_flags_win_over_the_environment_over_dotenv() {
    let dir = temp_dir();
    std::fs::write(dir.join(".env"), "CANARY_INTERVAL=every-so-often\nCANARY_MAX_WAIT=bad-from-dotenv\n")
        .unwrap();
    let mut command = canary_command(&dir);
    // The interval comes from the flag, the maximum wait from the environment (both over
    // `.env`'s bad values): what is left to refuse is the flag's bad read delay.
    command.env("CANARY_MAX_WAIT", "10s").args(["--interval", "1s", "--read-delay", "never"]);
    let output = tokio::time::timeout(Duration::from_secs(30), command.output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("CANARY_READ_DELAY") && stderr.contains("never"), "{stderr}");

    let mut command = canary_command(&dir);
    command.env("CANARY_MAX_WAIT", "10s");
    let output = tokio::time::timeout(Duration::from_secs(30), command.output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr.contains("CANARY_INTERVAL") && stderr.contains("every-so-often"),
        ".env is read: {stderr}"
    );
}
