"""One home for each setting: a dataclass field carries its default, its range or choices and its help, and the
command line, the module's parameter node and the Lib all read them from there.

A settings dataclass declares each field with :func:`setting`::

    @dataclass(frozen=True)
    class AcquisitionSettings:
        acceleration: float = setting(2.0, "undersampling factor R (1 = fully sampled)", minimum=1.0, maximum=16.0)
        mask: str = setting("equispaced", "sampling mask", choices=("equispaced", "variable-density"))

Then :func:`check_settings` refuses values outside the range (an ``InputError`` naming the setting),
:func:`add_arguments` makes the argparse options (``--acceleration``), and :func:`parameter_annotations`
gives the annotations of a Slicer ``parameterNodeWrapper`` class (``acceleration: Annotated[float,
WithinRange(1.0, 16.0)] = 2.0``), with the validators passed in by the module file, which alone imports
``slicer.parameterNodeWrapper``. Parameter names are the fields' names in camelCase (``center_fraction`` ->
``centerFraction``), as Slicer's parameter nodes and widget names spell them.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from .errors import InputError

#: Key of a field's :class:`Setting` in ``dataclasses.Field.metadata``.
METADATA_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    """What a field means and allows: ``help`` (one phrase, with units), an inclusive ``minimum`` / ``maximum``
    for numbers, or the allowed ``choices`` for text."""

    help: str
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Optional[tuple[str, ...]] = None

    def describe(self) -> str:
        """The help text with the allowed values, e.g. ``"coil count (1-32)"``."""
        if self.choices is not None:
            return f"{self.help} ({', '.join(self.choices)})"
        if self.minimum is not None and self.maximum is not None:
            return f"{self.help} ({self.minimum:g}-{self.maximum:g})"
        return self.help


def setting(default: Any, help: str, minimum: Optional[float] = None, maximum: Optional[float] = None,
            choices: Optional[Iterable[str]] = None) -> Any:
    """A dataclass field with ``default`` and its :class:`Setting` (module docstring)."""
    meta = Setting(help, minimum, maximum, None if choices is None else tuple(choices))
    return dataclasses.field(default=default, metadata={METADATA_KEY: meta})


@dataclass(frozen=True)
class SettingField:
    """One setting of a settings class: field ``name``, Python ``kind`` (float, int, str, bool), ``default``,
    and its :class:`Setting`."""

    name: str
    kind: type
    default: Any
    setting: Setting

    @property
    def parameter_name(self) -> str:
        """The name in camelCase (``center_fraction`` -> ``centerFraction``)."""
        head, *rest = self.name.split("_")
        return head + "".join(word.capitalize() for word in rest)

    @property
    def option(self) -> str:
        """The command-line option (``center_fraction`` -> ``--center-fraction``)."""
        return "--" + self.name.replace("_", "-")


def settings_fields(cls: type) -> list[SettingField]:
    """The fields of dataclass ``cls`` declared with :func:`setting`, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [SettingField(item.name, hints[item.name], item.default, item.metadata[METADATA_KEY])
            for item in dataclasses.fields(cls) if METADATA_KEY in item.metadata]


def check_value(field: SettingField, value: Any) -> None:
    """Raise an ``InputError`` naming ``field`` when ``value`` is outside its range or choices."""
    meta = field.setting
    if meta.choices is not None and value not in meta.choices:
        raise InputError(f"{field.name.replace('_', ' ')} must be one of {', '.join(meta.choices)}; got {value!r}")
    if meta.minimum is None and meta.maximum is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
        raise InputError(f"{field.name.replace('_', ' ')} must be a number; got {value!r}")
    low = -float("inf") if meta.minimum is None else meta.minimum
    high = float("inf") if meta.maximum is None else meta.maximum
    if not low <= value <= high:
        raise InputError(f"{field.name.replace('_', ' ')} must be between {low:g} and {high:g}; got {value:g}")


def check_settings(instance: Any) -> None:
    """Check every :func:`setting` field of a settings dataclass instance (call it in ``__post_init__``)."""
    for field in settings_fields(type(instance)):
        check_value(field, getattr(instance, field.name))


def add_arguments(parser: argparse.ArgumentParser | Any, cls: type, skip: Iterable[str] = ()) -> None:
    """Add one option per setting of ``cls`` (except the field names in ``skip``) to ``parser``: type, default,
    choices and help (with the range) from the field. Values are range-checked when the settings object is
    made (:func:`check_settings`), so an out-of-range option is one clear error."""
    for field in settings_fields(cls):
        if field.name in skip:
            continue
        if field.kind is bool:
            parser.add_argument(field.option, action=argparse.BooleanOptionalAction, default=field.default,
                                help=field.setting.help)
            continue
        parser.add_argument(field.option, type=field.kind, default=field.default, choices=field.setting.choices,
                            help=f"{field.setting.describe()}; default {field.default}")


def from_arguments(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of ``cls`` from the parsed options of :func:`add_arguments` (plus ``overrides``)."""
    values = {field.name: getattr(args, field.name) for field in settings_fields(cls) if hasattr(args, field.name)}
    values.update(overrides)
    return cls(**values)


def from_parameters(cls: type, parameters: Any, **overrides: Any) -> Any:
    """An instance of ``cls`` from a parameter node wrapper (attributes named :attr:`SettingField.parameter_name`)."""
    values = {field.name: getattr(parameters, field.parameter_name) for field in settings_fields(cls)}
    values.update(overrides)
    return cls(**values)


def parameter_annotations(classes: Iterable[type], within_range: Callable[[float, float], Any],
                          choice: Callable[[list], Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(annotations, defaults) of a parameter node class holding the settings of ``classes``: numbers with a
    range are ``Annotated[kind, within_range(minimum, maximum)]``, choices ``Annotated[str, choice([...])]``.
    ``within_range`` / ``choice`` are ``slicer.parameterNodeWrapper``'s ``WithinRange`` and ``Choice``."""
    annotations: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for cls in classes:
        for field in settings_fields(cls):
            meta, kind = field.setting, field.kind
            if meta.choices is not None:
                kind = typing.Annotated[kind, choice(list(meta.choices))]
            elif meta.minimum is not None and meta.maximum is not None:
                kind = typing.Annotated[kind, within_range(meta.minimum, meta.maximum)]
            if field.parameter_name in annotations:
                raise ValueError(f"two settings are named {field.parameter_name}")
            annotations[field.parameter_name] = kind
            defaults[field.parameter_name] = field.default
    return annotations, defaults
