"""Settings from one YAML or TOML file plus environment variables (SPEC section 5), validated at start.
Only the entry point calls `load_settings`; everything else receives the frozen result."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

from streams.domain.config import FlowConfig, InvalidConfig, LineConfig
from streams.domain.windows import parse_duration_s, zone

ENV_PREFIX = "CALLWATCH_"


class SettingsError(ValueError):
    """A setting that cannot be used; the message is one line naming it."""


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str = "127.0.0.1:19092"
    topic_prefix: str = "callwatch."
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)  # secret: never printed
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


@dataclass(frozen=True, slots=True)
class Settings:
    flow: FlowConfig = field(default_factory=FlowConfig)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    pseudonymisation_key: bytes | None = field(default=None, repr=False)  # secret: never printed


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SettingsError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0]
        raise SettingsError(f"config file {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"config file {path} must hold a mapping at its top level")
    return data


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool):
        raise SettingsError(f"{name} must be a number of seconds or a duration like 90s, not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
        try:
            return parse_duration_s(value)
        except InvalidConfig:
            pass
    raise SettingsError(f"{name} must be a number of seconds or a duration like 90s, not {value!r}")


_LINE_KEYS = {f.name for f in fields(LineConfig)}


def _line_config(name: str, raw: object, base: LineConfig) -> LineConfig:
    if not isinstance(raw, dict):
        raise SettingsError(f"lines.{name} must be a mapping of settings")
    unknown = set(raw) - _LINE_KEYS
    if unknown:
        raise SettingsError(f"lines.{name}: unknown setting {sorted(unknown)[0]!r} (known: {', '.join(sorted(_LINE_KEYS))})")
    values = {f.name: getattr(base, f.name) for f in fields(LineConfig)}
    for key, value in raw.items():
        if key == "sl_formula":
            values[key] = str(value)
        elif key == "waiting_limit":
            if not isinstance(value, int) or isinstance(value, bool):
                raise SettingsError(f"lines.{name}.waiting_limit must be a whole number, not {value!r}")
            values[key] = value
        elif key.endswith("_s"):
            values[key] = _seconds(value, f"lines.{name}.{key}")
        else:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise SettingsError(f"lines.{name}.{key} must be a number, not {value!r}")
            values[key] = float(value)
    try:
        return LineConfig(**values)
    except InvalidConfig as error:
        raise SettingsError(f"lines.{name}: {error}") from None


_TOP_KEYS = {"tz", "allowed_lateness_s", "max_wait_s", "rolling_windows", "live_lateness_s", "callback_window_s",
             "lines", "kafka", "pseudonymisation_key_file"}
_KAFKA_KEYS = {f.name for f in fields(KafkaSettings)} | {"sasl_password_file"}


def load_settings(path: str | os.PathLike[str] | None = None,
                  env: Mapping[str, str] | None = None) -> Settings:
    """Merge defaults, the file (if any) and `CALLWATCH_*` environment variables, in that order."""
    env = os.environ if env is None else env
    if path is None and env.get("CALLWATCH_CONFIG"):
        path = env["CALLWATCH_CONFIG"]
    raw: dict[str, Any] = _read_file(Path(path)) if path else {}
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise SettingsError(f"unknown setting {sorted(unknown)[0]!r} in config (known: {', '.join(sorted(_TOP_KEYS))})")

    def pick(key: str) -> Any:
        return env.get(ENV_PREFIX + key.upper(), raw.get(key))

    def seconds_setting(key: str, default: float) -> float:
        value = pick(key)
        return default if value is None else _seconds(value, key)

    base = FlowConfig()
    tz = str(pick("tz") or base.tz)
    try:
        zone(tz)
    except InvalidConfig as error:
        raise SettingsError(str(error)) from None
    lines = dict(base.lines)
    raw_lines = raw.get("lines") or {}
    if not isinstance(raw_lines, dict):
        raise SettingsError("lines must be a mapping of line name to settings")
    other = base.other_lines
    for name, line_raw in raw_lines.items():
        name = str(name)
        if name == "*":
            other = _line_config("*", line_raw, other)
        else:
            lines[name] = _line_config(name, line_raw, lines.get(name, other))
    rolling = pick("rolling_windows")
    if rolling is None:
        rolling_s = base.rolling_windows_s
    else:
        items = rolling.split(",") if isinstance(rolling, str) else rolling
        if not isinstance(items, list):
            raise SettingsError(f"rolling_windows must be a list of durations like [15m, 60m], not {rolling!r}")
        rolling_s = tuple(int(_seconds(item, "rolling_windows")) for item in items)
    try:
        flow = FlowConfig(
            tz=tz,
            allowed_lateness_s=seconds_setting("allowed_lateness_s", base.allowed_lateness_s),
            max_wait_s=seconds_setting("max_wait_s", base.max_wait_s),
            live_lateness_s=seconds_setting("live_lateness_s", base.live_lateness_s),
            callback_window_s=seconds_setting("callback_window_s", base.callback_window_s),
            lines=lines, other_lines=other, rolling_windows_s=rolling_s)
    except InvalidConfig as error:
        raise SettingsError(str(error)) from None
    return Settings(flow=flow, kafka=_kafka_settings(raw.get("kafka") or {}, env),
                    pseudonymisation_key=_secret(raw.get("pseudonymisation_key_file"), env,
                                                 "CALLWATCH_PSEUDONYMISATION_KEY"))


def _kafka_settings(raw: object, env: Mapping[str, str]) -> KafkaSettings:
    if not isinstance(raw, dict):
        raise SettingsError("kafka must be a mapping of settings")
    unknown = set(raw) - _KAFKA_KEYS
    if unknown:
        raise SettingsError(f"kafka: unknown setting {sorted(unknown)[0]!r} (known: {', '.join(sorted(_KAFKA_KEYS))})")
    if "sasl_password" in raw:
        raise SettingsError("kafka.sasl_password must not be written in the config file: use sasl_password_file or CALLWATCH_KAFKA_SASL_PASSWORD")
    values: dict[str, Any] = {}
    for f in fields(KafkaSettings):
        if f.name == "sasl_password":
            continue
        value = env.get(f"{ENV_PREFIX}KAFKA_{f.name.upper()}", raw.get(f.name))
        if f.name == "bootstrap_servers":
            value = env.get("CALLWATCH_KAFKA_BOOTSTRAP", value)
        if value is not None:
            values[f.name] = str(value)
    password = _secret(raw.get("sasl_password_file"), env, "CALLWATCH_KAFKA_SASL_PASSWORD")
    if password is not None:
        values["sasl_password"] = password.decode("utf-8")
    return KafkaSettings(**values)


def _secret(file_setting: object, env: Mapping[str, str], variable: str) -> bytes | None:
    """A secret from VARIABLE, VARIABLE_FILE or the config's *_file setting (never the config itself)."""
    if env.get(variable):
        return env[variable].encode("utf-8")
    path = env.get(variable + "_FILE") or file_setting
    if not path:
        return None
    try:
        secret = Path(str(path)).read_bytes().strip()
    except OSError as error:
        raise SettingsError(f"cannot read secret file {path} ({variable}_FILE): {error.strerror}") from None
    if not secret:
        raise SettingsError(f"secret file {path} ({variable}_FILE) is empty")
    return secret
