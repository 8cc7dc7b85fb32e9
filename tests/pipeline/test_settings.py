"""Settings: file + environment, validated with one-line errors naming the setting."""

import pytest

from streams.settings import SettingsError, load_settings


def test_defaults_follow_the_national_standards():
    settings = load_settings(env={})
    emergency, non_emergency = settings.flow.line("999"), settings.flow.line("101")
    assert (emergency.sl_formula, emergency.sl_threshold_s, emergency.sl_target) == ("answered", 10.0, 0.9)
    assert (non_emergency.sl_formula, non_emergency.abandon_target) == ("offered", 0.05)
    assert settings.flow.tz == "Europe/London" and settings.flow.allowed_lateness_s == 120


def test_yaml_file_then_environment(tmp_path):
    config = tmp_path / "callwatch.yaml"
    config.write_text("tz: Europe/Dublin\nallowed_lateness_s: 30s\nlines:\n  '101': {sl_threshold_s: 20}\n"
                      "  custom: {sl_formula: positive}\nkafka: {bootstrap_servers: 'k1:9092'}\n")
    settings = load_settings(config, env={"CALLWATCH_ALLOWED_LATENESS_S": "45", "CALLWATCH_KAFKA_BOOTSTRAP": "k2:9092"})
    assert settings.flow.tz == "Europe/Dublin"
    assert settings.flow.allowed_lateness_s == 45
    assert settings.flow.line("101").sl_threshold_s == 20 and settings.flow.line("101").sl_formula == "offered"
    assert settings.flow.line("custom").sl_formula == "positive"
    assert settings.kafka.bootstrap_servers == "k2:9092"


def test_toml_file(tmp_path):
    config = tmp_path / "callwatch.toml"
    config.write_text('rolling_windows = ["5m", "30m"]\n[lines.999]\nsl_target = 0.95\n')
    settings = load_settings(config, env={})
    assert settings.flow.rolling_windows_s == (300, 1800)
    assert settings.flow.line("999").sl_target == 0.95


def test_secrets_come_from_environment_or_files_never_the_config(tmp_path):
    key = tmp_path / "key"
    key.write_text("s3cret\n")
    assert load_settings(env={"CALLWATCH_PSEUDONYMISATION_KEY_FILE": str(key)}).pseudonymisation_key == b"s3cret"
    assert "s3cret" not in repr(load_settings(env={"CALLWATCH_PSEUDONYMISATION_KEY": "s3cret"}))
    config = tmp_path / "bad.yaml"
    config.write_text("kafka: {sasl_password: hunter2}\n")
    with pytest.raises(SettingsError, match="sasl_password must not be written"):
        load_settings(config, env={})


@pytest.mark.parametrize("text, message", [
    ("lines:\n  '999': {sl_formula: fastest}\n", "lines.999: sl_formula must be one of"),
    ("lines:\n  '999': {sl_target: 90}\n", "sl_target must be a fraction"),
    ("lines:\n  '999': {speed: 3}\n", "lines.999: unknown setting 'speed'"),
    ("tz: Mars/Olympus\n", "unknown time zone 'Mars/Olympus'"),
    ("max_wait_s: soon\n", "max_wait_s must be a number of seconds"),
    ("colour: blue\n", "unknown setting 'colour'"),
    ("- a list\n", "must hold a mapping"),
    ("tz: [unclosed\n", "is not valid YAML"),
])
def test_bad_config_is_one_clear_line(tmp_path, text, message):
    config = tmp_path / "c.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings(config, env={})
    assert "\n" not in str(caught.value)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(SettingsError, match="cannot read config file .*nope.yaml"):
        load_settings(tmp_path / "nope.yaml", env={})
