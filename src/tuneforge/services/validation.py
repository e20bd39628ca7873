"""Training-config validation: merge (registry defaults ← environment ← overrides), resolve, check deeply.

`validate` returns a `ValidationReport` (errors and warnings per field); `build_run_spec` turns a valid merge
into the `RunSpec` the trainer reads, or raises `Invalid`. Every path is resolved once, and the deep checks
look at the resolved paths: what is checked is what the trainer gets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneforge.errors import ConfigInvalid, FieldError, Invalid, TuneforgeError
from tuneforge.options import names, rules
from tuneforge.options.capabilities import needs_conditioning
from tuneforge.options.dataloader import DatasetConfig, parse_dataloader
from tuneforge.options.hooks import HOOK_OPTIONS, RUNNABLE_HOOKS, program_of
from tuneforge.options.registry import TrainingOptions, with_model_defaults
from tuneforge.options.spec import RunSpec
from tuneforge.services import configs, engine_checks
from tuneforge.services.config_files import (
    mask_secrets,
    read_json,
    resolve_config_file,
    resolve_data_path,
    writable_problem,
)
from tuneforge.services.dataset_checks import DatasetChecker
from tuneforge.services.datasets.files import image_problem
from tuneforge.services.job_policy import Access, JobPolicy
from tuneforge.services.model_checks import check_base_model, looks_local
from tuneforge.settings import Settings

_CONFIG_FILES = ("data_backend_config", "lycoris_config")  # JSON files the server reads: kept in the workspace
_DATA_PATHS = ("output_dir", "cache_dir_vae", "accelerate_config", "validation_reference_image")


@dataclass
class ValidationReport:
    errors: list[FieldError] = field(default_factory=list)
    warnings: list[FieldError] = field(default_factory=list)
    options: TrainingOptions | None = None  # as given (defaults not filled in)
    storable: dict[str, Any] | None = None  # what an environment's config.json keeps of them (see CheckedOptions)
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
        """The merged config with the model defaults, as `--option` keys, secrets masked (for responses)."""
        if self.options is None:
            return {}
        return mask_secrets(names.to_cli(with_model_defaults(self.options).model_dump(mode="json")))


@dataclass
class CheckedOptions:
    values: dict[str, Any]  # canonical names → values as given (a webhook file path stays a path)
    options: TrainingOptions | None
    errors: list[FieldError]
    warnings: list[FieldError] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # _CONFIG_FILES, resolved inside the workspace

    def storable(self) -> dict[str, Any]:
        """The given options, typed, as `--option` keys: what an environment's config.json keeps."""
        assert self.options is not None
        dumped = self.options.model_dump(mode="json", include=set(self.values))
        stored = {name: dumped[name] for name in self.values}
        if _webhook_path(self.values):  # the file is read at each run; its tokens never enter config.json
            stored["webhook_config"] = self.values["webhook_config"]
        return names.to_cli(stored)


def check_options(settings: Settings, raw: dict[str, Any]) -> CheckedOptions:
    """Registry-level checks (names, types, ranges, rules, config files kept inside the workspace).

    Reads no dataset; a `--webhook_config` file is read so that its content is checked.
    """
    values, errors = names.canonical(raw)
    options, problems = rules.parse(_with_webhook_file(settings, values, errors))
    checked = CheckedOptions(values, options, errors + problems)
    if options is None:
        return checked
    rule_errors, checked.warnings = rules.check_rules(options)
    checked.errors += rule_errors
    for name in _CONFIG_FILES:
        value = getattr(options, name)
        if value:
            try:
                checked.files[name] = resolve_config_file(settings, value, names.cli(name))
            except TuneforgeError as exc:
                checked.errors += exc.errors
    return checked


def _webhook_path(values: dict[str, Any]) -> bool:
    value = values.get("webhook_config")
    return isinstance(value, str) and bool(value.strip()) and value.strip()[0] not in "[{"


def _with_webhook_file(settings: Settings, values: dict[str, Any], errors: list[FieldError]) -> dict[str, Any]:
    """`--webhook_config` may name a JSON file (inside the workspace): the values with its content inlined."""
    if not _webhook_path(values):
        return values
    try:
        path = resolve_config_file(settings, values["webhook_config"], "--webhook_config")
        if not path.is_file():
            raise Invalid("missing", [FieldError("--webhook_config", f"file {path} not found; send the JSON "
                                                                     "itself or fix the path")])
        return {**values, "webhook_config": read_json(path, "--webhook_config")}
    except TuneforgeError as exc:
        errors += exc.errors
        return {k: v for k, v in values.items() if k != "webhook_config"}


def merge_sources(settings: Settings, env: str | None, config_file: Path | None,
                  overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The environment's (or config file's) values overlaid with overrides, as `--option` keys.

    An override replaces the base value under any spelling (`--checkpointing_steps` in the environment,
    `checkpoint_step_interval` in the form). A broken environment or config file raises `Invalid`.
    """
    base: dict[str, Any] = {}
    if config_file is not None:
        base = read_json(Path(config_file), str(config_file))
        if not isinstance(base, dict):
            raise Invalid("The config file must hold a JSON object",
                          [FieldError(str(config_file), "expected a JSON object of options")])
    elif env is not None:
        base = configs.load_config(settings, env)
    given = {key: value for key, value in (overrides or {}).items() if not names.is_ignored(key)}
    replaced = {names.canonical_name(key) for key in given}
    merged = {names.cli(names.bare(k)): v for k, v in base.items()
              if not names.is_ignored(k) and names.canonical_name(k) not in replaced}
    return merged | {names.cli(names.bare(k)): v for k, v in given.items()}


def validate(settings: Settings, *, env: str | None = None, config_file: Path | None = None,
             overrides: dict[str, Any] | None = None, job_id: str | None = None,
             policy: JobPolicy | None = None) -> ValidationReport:
    """Merge, resolve and check everything; the report holds the `spec` when there are no errors.

    `env=None` means the active environment, if there is one. A broken environment file is reported like any
    other problem, so validate and start answer in the same shape. `policy` (default: the server's roots) says
    what the job may touch; a path outside it stops the checks there, so that nothing is learnt about it.
    """
    policy = policy or JobPolicy.from_settings(settings)
    if config_file is None:
        env = env or configs.active_name(settings)
    report = ValidationReport(environment=env)
    try:
        merged = merge_sources(settings, env, config_file, overrides)
    except Invalid as exc:
        report.errors = exc.errors or [FieldError("config", exc.detail)]
        return report
    checked = check_options(settings, merged)
    report.errors, report.warnings, report.options = checked.errors, checked.warnings, checked.options
    if checked.options is None:
        return report
    report.storable = checked.storable()
    config = _resolve_options(settings, with_model_defaults(checked.options), checked.files, env, job_id)
    datasets = _load_datasets(settings, config, checked.files, report.errors)
    outside = _outside_policy(policy, config, datasets or [])
    if outside:
        report.errors += outside
        return report
    check_base_model(config, report.errors, report.warnings)
    if datasets is not None:
        checker = DatasetChecker(config)
        checker.check(datasets)
        report.errors += checker.errors
        report.warnings += checker.warnings
        _check_conditioning(config, datasets, report)
    _check_files(config, report)
    lycoris = engine_checks.load_lycoris(config, checked.files.get("lycoris_config"), report.errors,
                                         report.warnings)
    engine_checks.check_machine(config, report.errors)
    engine_checks.check_resume(config, lycoris, report.errors)
    if report.valid and datasets is not None:
        report.spec = RunSpec(job_id=job_id, workspace=settings.workspace, config=config, datasets=datasets,
                              lycoris=lycoris, environment=env, hooks_dir=policy.hooks_dir,
                              hooks_confined=policy.confined)
    return report


def build_run_spec(settings: Settings, *, env: str | None = None, config_file: Path | None = None,
                   overrides: dict[str, object] | None = None, job_id: str | None = None,
                   policy: JobPolicy | None = None) -> RunSpec:
    """The resolved, validated spec of a run; raises `Invalid` with per-field errors."""
    report = validate(settings, env=env, config_file=config_file, overrides=overrides, job_id=job_id,
                      policy=policy)
    report.raise_if_invalid()
    assert report.spec is not None
    return report.spec


def _resolve_options(settings: Settings, options: TrainingOptions, files: dict[str, Path], env: str | None,
                     job_id: str | None) -> TrainingOptions:
    """Every path made absolute, the default output folder filled in."""
    update: dict[str, Any] = {name: str(path) for name, path in files.items()}
    for name in _DATA_PATHS:
        value = getattr(options, name)
        if value:
            update[name] = str(resolve_data_path(settings, value))
    if not options.output_dir:
        update["output_dir"] = str(settings.output_dir / (env or job_id or "default"))
    base = options.pretrained_model_name_or_path or ""
    if looks_local(settings, base):
        update["pretrained_model_name_or_path"] = str(resolve_data_path(settings, base))
    if options.resume_from_checkpoint and "/" in options.resume_from_checkpoint:  # a path, not a checkpoint name
        update["resume_from_checkpoint"] = str(resolve_data_path(settings, options.resume_from_checkpoint))
    return options.model_copy(update=update)


def _outside_policy(policy: JobPolicy, config: TrainingOptions, datasets: list[DatasetConfig]) -> list[FieldError]:
    """Every path the job would read or write, every program it would run and every address it would post to,
    against the policy (paths are resolved by now)."""
    hooks = [policy.hook_problem(getattr(config, name), names.cli(name)) for name in RUNNABLE_HOOKS
             if getattr(config, name)]
    hooks += [policy.webhook_problem(target.callback_url, f"--webhook_config[{number}].callback_url")
              for number, target in enumerate(config.webhook_config or [])]
    checks: list[tuple[str, str | None, Access]] = [
        ("--output_dir", config.output_dir, "write"), ("--cache_dir_vae", config.cache_dir_vae, "write"),
        ("--accelerate_config", config.accelerate_config, "read"),
        ("--validation_reference_image", config.validation_reference_image, "read")]
    for name in ("pretrained_model_name_or_path", "resume_from_checkpoint"):
        value = getattr(config, name)
        if value and Path(value).is_absolute():  # else a hub id, or a checkpoint name inside output_dir
            checks.append((names.cli(name), value, "read"))
    for entry in datasets:
        where = f"--data_backend_config[{entry.id}]"
        checks += [(f"{where}.instance_data_dir", entry.instance_data_dir, "read"),
                   (f"{where}.cache_dir_vae", entry.cache_dir_vae, "write"),
                   (f"{where}.cache_dir", entry.cache_dir, "write")]
    paths = [policy.problem(Path(value), field_name, access) for field_name, value, access in checks if value]
    return [problem for problem in [*paths, *hooks] if problem]


def _load_datasets(settings: Settings, config: TrainingOptions, files: dict[str, Path],
                   errors: list[FieldError]) -> list[DatasetConfig] | None:
    """The dataloader file's datasets, their paths resolved; None after reporting why there are none."""
    field_name = "--data_backend_config"
    if not config.data_backend_config:
        errors.append(FieldError(field_name, "required: set it to the dataloader file, e.g. "
                                             "my-env/multidatabackend.json (relative to config/)"))
        return None
    path = files.get("data_backend_config")
    if path is None:
        return None  # outside the workspace: reported by check_options
    try:
        if not path.is_file():
            raise Invalid("missing", [FieldError(field_name, f"file {path} not found; write the dataloader file "
                                                             "or fix the path (relative to config/)")])
        datasets = parse_dataloader(read_json(path, field_name))
    except TuneforgeError as exc:
        for problem in exc.errors:
            where = problem.field if problem.field.startswith("--") else f"{field_name}{problem.field}"
            errors.append(FieldError(field_name if problem.field == "dataloader" else where, problem.message))
        return None
    vae_root = Path(config.cache_dir_vae) if config.cache_dir_vae else settings.workspace / "cache" / "vae"
    return [_resolve_dataset(settings, entry, vae_root) for entry in datasets]


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


def _check_conditioning(config: TrainingOptions, datasets: list[DatasetConfig], report: ValidationReport) -> None:
    model = f"{config.model_family} {config.model_flavour}"
    linked = any(d.conditioning_data for d in datasets if not d.disabled and d.dataset_type == "image")
    if needs_conditioning(config.model_family, config.model_flavour) and not linked:
        report.errors.append(FieldError("--data_backend_config", f"{model} trains on edit/reference pairs: add a "
                                        "conditioning dataset and name it in the image dataset's conditioning_data"))
    elif linked and not needs_conditioning(config.model_family, config.model_flavour):
        report.warnings.append(FieldError("--data_backend_config", f"conditioning datasets are ignored by {model}"))


def _check_files(config: TrainingOptions, report: ValidationReport) -> None:
    """Output and cache folders writable; named files and checkpoint folders present (paths are resolved)."""
    for name in ("output_dir", "cache_dir_vae"):
        value = getattr(config, name)
        problem = writable_problem(Path(value)) if value else None
        if problem:
            report.errors.append(FieldError(names.cli(name), f"{problem}; choose a writable folder"))
    if config.accelerate_config and not Path(config.accelerate_config).is_file():
        report.errors.append(FieldError("--accelerate_config", f"file {config.accelerate_config} not found"))
    reference = config.validation_reference_image
    problem = image_problem(Path(reference)) if reference and Path(reference).is_file() else "not found"
    if reference and problem:
        report.errors.append(FieldError("--validation_reference_image", f"{reference}: {problem}; give an image "
                                        "file, or leave it empty to use the first pair's reference"))
    for name in HOOK_OPTIONS:
        _check_command(getattr(config, name), name, report)


def _check_command(command: str | None, name: str, report: ValidationReport) -> None:
    """A hook whose program is an absolute path that does not exist will fail later: say so now."""
    try:
        program = program_of(command) if command and command.strip() else ""
    except ValueError as exc:
        report.errors.append(FieldError(names.cli(name), f"{command!r} cannot be read as a command: {exc}"))
        return
    if program.startswith("/") and not Path(program).is_file():
        report.warnings.append(FieldError(names.cli(name), f"program {program} not found on this machine"))
