"""Training-config validation: merge (registry defaults ← environment ← overrides), check deeply, resolve.

`validate` returns a `ValidationReport` (errors and warnings per field); `build_run_spec` turns a valid merge
into the `RunSpec` the trainer reads, or raises `Invalid`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigInvalid, FieldError, Invalid, TuneforgeError
from tuneforge.options import names, rules
from tuneforge.options.dataloader import DatasetConfig, parse_dataloader
from tuneforge.options.families import needs_conditioning
from tuneforge.options.registry import TrainingOptions
from tuneforge.options.spec import RunSpec
from tuneforge.services import configs
from tuneforge.services.config_files import (
    mask_secrets,
    read_json,
    resolve_config_file,
    resolve_data_path,
    writable_problem,
)
from tuneforge.services.dataset_checks import DatasetChecker
from tuneforge.services.model_checks import check_base_model, looks_local
from tuneforge.settings import Settings

_PATH_OPTIONS = ("output_dir", "cache_dir_vae", "accelerate_config")


@dataclass
class ValidationReport:
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldError] = field(default_factory=list)
    options: TrainingOptions | None = None
    spec: RunSpec | None = None
    environment: str | None = None

    @property
    def valid(self) -> bool:
        return not self.errors

    def raise_if_invalid(self) -> None:
        if self.errors:
            summary = "; ".join(f"{e.field}: {e.message}" for e in self.errors[:3])
            raise ConfigInvalid(f"Validation Failed: {summary}", self.errors, self.warnings)

    def effective_config(self) -> dict[str, Any]:
        """The merged config as `--option` keys, secrets masked (for responses)."""
        if self.options is None:
            return {}
        return mask_secrets(names.to_cli(self.options.model_dump(mode="json")))


def check_options(settings: Settings, raw: dict[str, Any]) -> tuple[dict[str, Any], TrainingOptions | None,
                                                                    list[FieldError], list[FieldError]]:
    """Registry-level checks (names, types, ranges, rules, file paths kept inside the workspace).

    Returns (canonical values as given, parsed options or None, errors, warnings). Reads no dataset.
    """
    values, errors = names.canonical(raw)
    values = _load_webhook_file(settings, values, errors)
    options, problems = rules.parse(values)
    errors += problems
    warnings: list[FieldError] = []
    if options is not None:
        rule_errors, warnings = rules.check_rules(options)
        errors += rule_errors
        for name in ("data_backend_config", "lycoris_config"):
            value = getattr(options, name)
            if value:
                try:
                    resolve_config_file(settings, value, names.cli(name))
                except TuneforgeError as exc:
                    errors += exc.errors
    return values, options, errors, warnings


def _load_webhook_file(settings: Settings, values: dict[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """`--webhook_config` may name a JSON file (inside the workspace): inline its content."""
    value = values.get("webhook_config")
    if not isinstance(value, str) or not value.strip() or value.strip()[0] in "[{":
        return values
    try:
        path = resolve_config_file(settings, value, "--webhook_config")
        if not path.is_file():
            raise Invalid("missing", [FieldError("--webhook_config", f"file {path} not found; send the JSON "
                                                                     "itself or fix the path")])
        return {**values, "webhook_config": read_json(path, "--webhook_config")}
    except TuneforgeError as exc:
        errors += exc.errors
        return {k: v for k, v in values.items() if k != "webhook_config"}


def merge_sources(settings: Settings, env: str | None, config_file: Path | None,
                  overrides: dict[str, Any] | None) -> tuple[dict[str, Any], str | None]:
    """Environment (or config file) values overlaid with overrides, all as `--option` keys.

    `env=None` means the active environment, if there is one. A broken environment file raises `Invalid`.
    """
    base: dict[str, Any] = {}
    if config_file is not None:
        data = read_json(Path(config_file), str(config_file))
        if not isinstance(data, dict):
            raise Invalid("The config file must hold a JSON object",
                          [FieldError(str(config_file), "expected a JSON object of options")])
        base = data
    else:
        env = env or configs.active_name(settings)
        if env is not None:
            base = configs.load_config(settings, env)
    merged = {names.cli(names.bare(k)): v for k, v in base.items() if not names.is_ignored(k)}
    for key, value in (overrides or {}).items():
        if not names.is_ignored(key):
            bare = names.bare(key)
            merged.pop(names.cli(names.aliases().get(bare, bare)), None)  # an alias overrides its canonical
            merged[names.cli(bare)] = value
    return merged, env


def validate(settings: Settings, *, env: str | None = None, config_file: Path | None = None,
             overrides: dict[str, Any] | None = None, job_id: str | None = None) -> ValidationReport:
    """Merge and check everything; the report holds a resolved `spec` when there are no errors."""
    merged, env_name = merge_sources(settings, env, config_file, overrides)
    _, options, errors, warnings = check_options(settings, merged)
    report = ValidationReport(errors, warnings, options, environment=env_name)
    if options is None:
        return report
    check_base_model(settings, options, report.errors, report.warnings)
    datasets = _load_datasets(settings, options, report.errors)
    if datasets is not None:
        checker = DatasetChecker(settings, options)
        checker.check(datasets)
        report.errors += checker.errors
        report.warnings += checker.warnings
        _check_conditioning(options, datasets, report)
    lycoris = _check_files(settings, options, report)
    if report.valid and datasets is not None:
        report.spec = _resolve(settings, options, datasets, lycoris, env_name, job_id)
    return report


def build_run_spec(settings: Settings, *, env: str | None = None, config_file: Path | None = None,
                   overrides: dict[str, object] | None = None, job_id: str | None = None) -> RunSpec:
    """The resolved, validated spec of a run; raises `Invalid` with per-field errors."""
    report = validate(settings, env=env, config_file=config_file, overrides=overrides, job_id=job_id)
    report.raise_if_invalid()
    assert report.spec is not None
    return report.spec


def _load_datasets(settings: Settings, options: TrainingOptions, errors: list[FieldError]) -> list[DatasetConfig] | None:
    field_name = "--data_backend_config"
    if not options.data_backend_config:
        errors.append(FieldError(field_name, "required: set it to the dataloader file, e.g. "
                                             "my-env/multidatabackend.json (relative to config/)"))
        return None
    try:
        path = resolve_config_file(settings, options.data_backend_config, field_name)
        if not path.is_file():
            raise Invalid("missing", [FieldError(field_name, f"file {path} not found; write the dataloader file "
                                                             "or fix the path (relative to config/)")])
        return parse_dataloader(read_json(path, field_name))
    except TuneforgeError as exc:
        for problem in exc.errors:
            where = problem.field if problem.field.startswith("--") else f"{field_name}{problem.field}"
            if problem.field == "dataloader":
                where = field_name
            errors.append(FieldError(where, problem.message))
        return None


def _check_conditioning(options: TrainingOptions, datasets: list[DatasetConfig], report: ValidationReport) -> None:
    linked = any(d.conditioning_data for d in datasets if not d.disabled and d.dataset_type == "image")
    if needs_conditioning(options.model_family, options.model_flavour) and not linked:
        report.errors.append(FieldError("--data_backend_config", "Kontext trains on edit/reference pairs: add a "
                                        "conditioning dataset and name it in the image dataset's "
                                        "conditioning_data"))
    elif linked and not needs_conditioning(options.model_family, options.model_flavour):
        report.warnings.append(FieldError("--data_backend_config", f"conditioning datasets are ignored by "
                                          f"{options.model_family} {options.model_flavour}"))


def _check_files(settings: Settings, options: TrainingOptions, report: ValidationReport) -> dict[str, Any] | None:
    """Output and cache folders writable; named files present; returns the parsed LyCORIS config."""
    for name in ("output_dir", "cache_dir_vae"):
        value = getattr(options, name)
        problem = writable_problem(resolve_data_path(settings, value)) if value else None
        if problem:
            report.errors.append(FieldError(names.cli(name), f"{problem}; choose a writable folder"))
    if options.accelerate_config and not resolve_data_path(settings, options.accelerate_config).is_file():
        report.errors.append(FieldError("--accelerate_config", f"file {options.accelerate_config} not found"))
    for name in ("validation_external_script", "post_checkpoint_script", "post_upload_script"):
        _check_command(getattr(options, name), name, report)
    if options.resume_from_checkpoint and options.resume_from_checkpoint != "latest":
        value = options.resume_from_checkpoint
        if "/" in value and not resolve_data_path(settings, value).is_dir():
            report.errors.append(FieldError("--resume_from_checkpoint", f"checkpoint folder {value} not found; use "
                                            "'latest' or an existing checkpoint"))
    if options.model_type == "lora" and options.lora_type == "lycoris":
        return _load_lycoris(settings, options, report)
    return None


def _check_command(command: str | None, name: str, report: ValidationReport) -> None:
    """A hook whose program is an absolute path that does not exist will fail later: say so now."""
    program = (command or "").split()[0] if (command or "").strip() else ""
    if program.startswith("/") and not Path(program).is_file():
        report.warnings.append(FieldError(names.cli(name), f"program {program} not found on this machine"))


def _load_lycoris(settings: Settings, options: TrainingOptions, report: ValidationReport) -> dict[str, Any] | None:
    field_name = "--lycoris_config"
    if not options.lycoris_config:
        report.errors.append(FieldError(field_name, "required for --lora_type=lycoris: point it at a LyCORIS JSON "
                                                    "file such as config/<env>/lycoris_config.json"))
        return None
    try:
        path = resolve_config_file(settings, options.lycoris_config, field_name)
        if not path.is_file():
            raise Invalid("missing", [FieldError(field_name, f"file {path} not found")])
        data = read_json(path, field_name)
    except TuneforgeError as exc:
        report.errors += exc.errors
        return None
    if not isinstance(data, dict) or not isinstance(data.get("algo"), str):
        report.errors.append(FieldError(field_name, "must be a JSON object with an 'algo' (e.g. lokr, lora, loha)"))
        return None
    return data


def _resolve(settings: Settings, options: TrainingOptions, datasets: list[DatasetConfig],
             lycoris: dict[str, Any] | None, env: str | None, job_id: str | None) -> RunSpec:
    """Every path made absolute, every default folder filled in."""
    update: dict[str, Any] = {}
    for name in _PATH_OPTIONS:
        value = getattr(options, name)
        if value:
            update[name] = str(resolve_data_path(settings, value))
    if not options.output_dir:
        update["output_dir"] = str(settings.output_dir / (env or job_id or "default"))
    for name in ("data_backend_config", "lycoris_config"):
        value = getattr(options, name)
        if value:
            update[name] = str(resolve_config_file(settings, value, names.cli(name)))
    base = options.pretrained_model_name_or_path or ""
    if looks_local(settings, base):
        update["pretrained_model_name_or_path"] = str(resolve_data_path(settings, base))
    if options.resume_from_checkpoint and "/" in options.resume_from_checkpoint:
        update["resume_from_checkpoint"] = str(resolve_data_path(settings, options.resume_from_checkpoint))
    config = options.model_copy(update=update)
    vae_root = Path(update.get("cache_dir_vae") or settings.workspace / "cache" / "vae")
    resolved = [_resolve_dataset(settings, entry, vae_root) for entry in datasets]
    return RunSpec(job_id=job_id, workspace=settings.workspace, config=config, datasets=resolved,
                   lycoris=lycoris, environment=env)


def _resolve_dataset(settings: Settings, entry: DatasetConfig, vae_root: Path) -> DatasetConfig:
    update: dict[str, Any] = {}
    if entry.instance_data_dir:
        update["instance_data_dir"] = str(resolve_data_path(settings, entry.instance_data_dir))
    if entry.dataset_type == "text_embeds":
        update["cache_dir"] = str(resolve_data_path(settings, entry.cache_dir or f"cache/text/{entry.id}"))
    else:
        update["cache_dir_vae"] = str(resolve_data_path(settings, entry.cache_dir_vae) if entry.cache_dir_vae
                                      else vae_root / entry.id)
    return entry.model_copy(update=update)

