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
``centerFraction``), as Slicer's parameter nodes and widget names spell them. :func:`settings_parameters` is
the class decorator that puts those annotations and defaults on a module's parameter node class, before
``@parameterNodeWrapper`` reads them.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InputError

#: Key of a field's :class:`Setting` in ``dataclasses.Field.metadata``.
METADATA_KEY = "setting"


@dataclass(frozen=True)
class Setting:
    """What a field means and allows: ``help`` (one phrase, with units), an inclusive ``minimum`` / ``maximum``
    for numbers, or the allowed ``choices`` for text; ``parameter`` / ``option`` replace the derived
    parameter-node name and command-line option when those are spelled otherwise (``noiseSD``, ``--size``)."""

    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None
    parameter: str | None = None
    option: str | None = None

    def describe(self) -> str:
        """The help text with the allowed values, e.g. ``"coil count (1-32)"``."""
        if self.choices is not None:
            return f"{self.help} ({', '.join(self.choices)})"
        if self.minimum is not None and self.maximum is not None:
            return f"{self.help} ({_number(self.minimum)}-{_number(self.maximum)})"
        return self.help


def _number(value: float) -> str:
    """An int as written (2147483647), a float in ``g`` format (0.08, 1e+12)."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def setting(
    default: Any,
    help: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: Iterable[str] | None = None,
    parameter: str | None = None,
    option: str | None = None,
) -> Any:
    """A dataclass field with ``default`` and its :class:`Setting` (module docstring). ValueError when the default
    itself is outside the range or choices, or when a range is given for choices."""
    meta = Setting(help, minimum, maximum, None if choices is None else tuple(choices), parameter, option)
    if meta.choices is not None and (minimum is not None or maximum is not None):
        raise ValueError("a setting has choices or a range, not both")
    try:
        check_value(SettingField("default", type(default), default, meta), default)
    except InputError as error:
        raise ValueError(f"the default of the setting {help!r} is not allowed: {error}") from None
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
        """The name in camelCase (``center_fraction`` -> ``centerFraction``), unless the setting names it."""
        if self.setting.parameter is not None:
            return self.setting.parameter
        head, *rest = self.name.split("_")
        return head + "".join(word.capitalize() for word in rest)

    @property
    def option(self) -> str:
        """The command-line option (``center_fraction`` -> ``--center-fraction``), unless the setting names it."""
        return self.setting.option or "--" + self.name.replace("_", "-")


def settings_fields(cls: type) -> list[SettingField]:
    """The fields of dataclass ``cls`` declared with :func:`setting`, in declaration order."""
    hints = typing.get_type_hints(cls)
    return [
        SettingField(item.name, hints[item.name], item.default, item.metadata[METADATA_KEY])
        for item in dataclasses.fields(cls)
        if METADATA_KEY in item.metadata
    ]


def settings_field(cls: type, name: str) -> SettingField:
    """The :func:`setting` field ``name`` of ``cls``; KeyError when it has none of that name."""
    for field in settings_fields(cls):
        if field.name == name:
            return field
    raise KeyError(f"{cls.__name__} has no setting {name!r}")


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
        raise InputError(
            f"{field.name.replace('_', ' ')} must be between {_number(low)} and {_number(high)}; got {_number(value)}"
        )


def check_settings(instance: Any) -> None:
    """Check every :func:`setting` field of a settings dataclass instance (call it in ``__post_init__``)."""
    for field in settings_fields(type(instance)):
        check_value(field, getattr(instance, field.name))


def argument_keywords(field: SettingField) -> dict[str, Any]:
    """``parser.add_argument`` keywords of ``field`` (type, default, choices, help with range and default), for
    an option that ``add_arguments`` cannot name (e.g. ``--size`` for ``roi_size``). Values are range-checked
    when the settings object is made (:func:`check_settings`), not by argparse."""
    if field.kind is bool:
        return {
            "dest": field.name,
            "action": argparse.BooleanOptionalAction,
            "default": field.default,
            "help": field.setting.help,
        }
    return {
        "dest": field.name,
        "type": field.kind,
        "default": field.default,
        "choices": field.setting.choices,
        "help": f"{field.setting.describe()}; default "
        f"{_number(field.default) if field.kind in (int, float) else field.default}",
    }


def add_arguments(
    parser: argparse.ArgumentParser | Any,
    cls: type,
    skip: Iterable[str] = (),
    required: Iterable[str] = (),
    only: Iterable[str] | None = None,
) -> None:
    """Add one option per setting of ``cls`` (only the field names in ``only`` when given; never those in
    ``skip``) to ``parser``: ``--center-fraction`` for ``center_fraction``, with :func:`argument_keywords`. The
    fields named in ``required`` become required options (no default). Values are range-checked when the
    settings object is made (:func:`check_settings`), so an out-of-range option is one clear error."""
    skip, required = set(skip), set(required)
    only = None if only is None else set(only)
    for field in settings_fields(cls):
        if field.name in skip or (only is not None and field.name not in only):
            continue
        keywords = argument_keywords(field)
        if field.name in required:
            keywords.pop("default")
            keywords["required"] = True
            keywords["help"] = field.setting.describe()
        parser.add_argument(field.option, **keywords)


def from_arguments(cls: type, args: argparse.Namespace, **overrides: Any) -> Any:
    """An instance of ``cls`` from the parsed options of :func:`add_arguments` (plus ``overrides``)."""
    values = {field.name: getattr(args, field.name) for field in settings_fields(cls) if hasattr(args, field.name)}
    values.update(overrides)
    return cls(**values)


def from_parameters(cls: type, parameters: Any, **overrides: Any) -> Any:
    """An instance of ``cls`` from a parameter node wrapper (attributes named :attr:`SettingField.parameter_name`),
    with ``overrides`` (field names) replacing or standing in for parameters the node does not hold."""
    values = {
        field.name: getattr(parameters, field.parameter_name)
        for field in settings_fields(cls)
        if field.name not in overrides
    }
    values.update(overrides)
    return cls(**values)


def parameter_annotations(
    classes: Iterable[type],
    within_range: Callable[[float, float], Any],
    choice: Callable[[list], Any],
    skip: Iterable[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(annotations, defaults) of a parameter node class holding the settings of ``classes`` (except the field
    names in ``skip``): numbers with a range are ``Annotated[kind, within_range(minimum, maximum)]``, choices
    ``Annotated[str, choice([...])]``, others the plain kind. ``within_range`` / ``choice`` are
    ``slicer.parameterNodeWrapper``'s ``WithinRange`` and ``Choice``. Keys are the camelCase names; ValueError
    when two settings share one."""
    skip = set(skip)
    annotations: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for cls in classes:
        for field in settings_fields(cls):
            if field.name in skip:
                continue
            meta = field.setting
            kind: Any = field.kind
            if meta.choices is not None:
                kind = typing.Annotated[kind, choice(list(meta.choices))]
            elif meta.minimum is not None and meta.maximum is not None:
                kind = typing.Annotated[kind, within_range(meta.minimum, meta.maximum)]
            if field.parameter_name in annotations:
                raise ValueError(f"two settings are named {field.parameter_name}")
            annotations[field.parameter_name] = kind
            defaults[field.parameter_name] = field.default
    return annotations, defaults


def settings_parameters(
    classes: Iterable[type],
    within_range: Callable[[float, float], Any],
    choice: Callable[[list], Any],
    skip: Iterable[str] = (),
) -> Callable[[type], type]:
    """Class decorator for a module's parameter node class: adds the :func:`parameter_annotations` of
    ``classes`` to the class's own annotations and sets their defaults as class attributes. Put it *below*
    ``@parameterNodeWrapper`` (decorators apply bottom-up, so the wrapper sees the finished class)::

        @parameterNodeWrapper
        @settings_parameters((SimulationSettings,), WithinRange, Choice)
        class XParameterNode:
            inputVolume: vtkMRMLScalarVolumeNode  # written annotations stay (also as strings, with
                                                  # ``from __future__ import annotations``)

    Why this works: Slicer's wrapper reads a class only through ``typing.get_type_hints`` and
    ``hasattr``/``getattr``, so annotations put on the class before it runs count as written ones
    (``Base/Python/slicer/parameterNodeWrapper/wrapper.py`` at v5.10.0, ``_processClass``; ``parameterPack.py``'s
    ``_processParameterPack`` reads packs the same way)::

        members = typing.get_type_hints(classtype, include_extras=True)
        ...
        if hasattr(classtype, name):
            # default via equals
            default = Default(getattr(classtype, name))

    ``get_type_hints`` takes each class's ``__dict__["__annotations__"]``, evaluates the string entries (the
    written ones under ``from __future__ import annotations``) in the class's module globals (Slicer registers
    a scripted module in ``sys.modules`` before running it: ``qSlicerScriptedUtils::loadSourceAsModule``) and
    keeps the others (these generated ``Annotated`` types) as they are, ``include_extras`` keeping
    ``WithinRange`` / ``Choice``. ValueError when a generated name is also written in the class."""
    classes = tuple(classes)
    skip = tuple(skip)

    def decorate(cls: type) -> type:
        annotations, defaults = parameter_annotations(classes, within_range, choice, skip)
        own = dict(cls.__dict__.get("__annotations__", {}))
        clash = sorted(set(own) & set(annotations))
        if clash:
            raise ValueError(f"{cls.__name__} writes {', '.join(clash)}, which its settings classes define")
        cls.__annotations__ = {**own, **annotations}
        for name, value in defaults.items():
            setattr(cls, name, value)
        return cls

    return decorate
