"""The module's *Reader study* section: its widgets wired to a :class:`ReaderSession` (the study's state) and a
:class:`ReaderLayout` (the views while reading).

It imports no qt: the widgets are used through their Python properties (``text``, ``enabled``,
``currentIndex``, ``currentNode()``, ``currentPath``) and ``connect``, as ``FastMRICommon.button_jobs`` uses
its buttons, so the section runs outside Slicer with stand-in widgets on a real MRML scene (Testing/). What
only the running application has (its layout manager, message boxes, the chart view) comes through
:class:`SlicerGui`. The panel's texts are translated as the module file's are (``slicer.i18n.tr``, whose
context for a package file is ``package.file``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from FastMRICommon.errors import InputError
from FastMRReconLib.study.reader_session import SCORE_CHOICES, STUDY_METHODS, ReaderSession
from FastMRReconLib.study.reader_study import LIKERT
from FastMRReconLib.study.reader_views import ReaderLayout, data_probe_annotations

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core outside Slicer: no translations

    def _(text: str) -> str:
        return text


#: The widgets of the module's .ui the panel uses (``ui.<name>``).
WIDGETS = (
    "studyFullSelector",
    "studyUndersampledSelector",
    "studyDnnSelector",
    "addCaseButton",
    "pendingCasesLabel",
    "studyPathLineEdit",
    "createStudyButton",
    "startReadingButton",
    "caseLabel",
    "scoreAComboBox",
    "scoreBComboBox",
    "scoreCComboBox",
    "readerStatusLabel",
    "nextCaseButton",
    "finishReadingButton",
)


class SlicerGui:
    """What the panel needs from the running Slicer application (``slicer`` is imported when used)."""

    def layout_manager(self) -> Any | None:
        """Slicer's layout manager; None without the main window (``--no-main-window``)."""
        import slicer

        return slicer.app.layoutManager()

    def annotations(self) -> Any | None:
        import slicer

        return data_probe_annotations(slicer.modules)

    def error_display(self, message: str) -> AbstractContextManager:
        """A message box with ``message`` and the error, for an error raised inside the context."""
        import slicer

        return slicer.util.tryWithErrorDisplay(message)

    def reset_views(self) -> None:
        import slicer

        slicer.util.resetSliceViews()

    def show_chart(self, chart: Any) -> None:
        import slicer

        slicer.modules.plots.logic().ShowChartInLayout(chart)


class ReaderStudyPanel:
    """The *Reader study* section of the module's GUI (``ui``: the module's widgets, ``WIDGETS`` of them used),
    on ``scene``: *Add case* collects (full, undersampled, DNN) volumes, *Create study* writes them as a study
    file, *Start reading* opens the file and shows ``reader()``'s (the parameter node's reader name) next case
    blinded in the reader layout, each score box saves its score at once, *Next case* and *Finish* (the
    unblinded summary as a table and a chart) follow. Errors are shown by ``gui.error_display``."""

    def __init__(self, ui: Any, scene: Any, reader: Callable[[], str], gui: Any | None = None) -> None:
        self.ui, self.reader, self.gui = ui, reader, gui or SlicerGui()
        self.session = ReaderSession(scene)
        self.layout: ReaderLayout | None = None  # on screen while reading
        self.boxes = {"A": ui.scoreAComboBox, "B": ui.scoreBComboBox, "C": ui.scoreCComboBox}
        for label, box in self.boxes.items():
            box.addItems([_("not scored")] + [f"{score} {LIKERT[score]}" for score in SCORE_CHOICES])
            box.connect("activated(int)", lambda index, label=label: self.on_score(label, index))
        for button, slot in (
            (ui.addCaseButton, self.on_add_case),
            (ui.createStudyButton, self.on_create_study),
            (ui.startReadingButton, self.on_start_reading),
            (ui.nextCaseButton, self.on_next_case),
            (ui.finishReadingButton, self.on_finish_reading),
        ):
            button.connect("clicked(bool)", slot)
        self.update()

    def on_add_case(self) -> None:
        with self.gui.error_display(_("Adding the case failed.")):
            count = self.session.add_case(
                [
                    self.ui.studyFullSelector.currentNode(),
                    self.ui.studyUndersampledSelector.currentNode(),
                    self.ui.studyDnnSelector.currentNode(),
                ]
            )
            self.ui.pendingCasesLabel.text = _("{count} case(s) ready").format(count=count)
            self.ui.createStudyButton.enabled = True

    def on_create_study(self) -> None:
        with self.gui.error_display(_("Creating the study failed.")):
            path = self.session.create(self.ui.studyPathLineEdit.currentPath)
            self.ui.createStudyButton.enabled = False
            self.ui.pendingCasesLabel.text = _("Created {path}").format(path=path)

    def on_start_reading(self) -> None:
        with self.gui.error_display(_("Opening the study failed.")):
            self.close()
            manager = self.gui.layout_manager()
            if manager is None:
                raise InputError(_("The reader study needs Slicer's main window (its slice views)."))
            self.session.open(self.ui.studyPathLineEdit.currentPath)
            self.layout = ReaderLayout(
                self.session.scene, manager.layoutLogic().GetLayoutNode(), manager, self.gui.annotations()
            )
            self.layout.enter()
            self.on_next_case()

    def on_score(self, label: str, index: int) -> None:
        """Score box ``label`` chose item ``index`` (0: "not scored", then ``SCORE_CHOICES``)."""
        if index > 0 and self.session.case is not None:
            with self.gui.error_display(_("Saving the score failed.")):
                self.session.score(self.reader(), label, SCORE_CHOICES[index - 1])
                self.update()

    def on_next_case(self) -> None:
        with self.gui.error_display(_("Loading the next case failed.")):
            if self.session.show_next_case(self.reader()) is not None:
                self.gui.reset_views()
            for box in self.boxes.values():
                box.currentIndex = 0
            self.update()

    def on_finish_reading(self) -> None:
        with self.gui.error_display(_("Summarising the study failed.")):
            _table, chart = self.session.finish()
            self.close()
            self.gui.show_chart(chart)

    def update(self) -> None:
        """Show the reading state: score boxes, buttons, the case and how many scores are saved."""
        state = self.session.state(self.reader())
        for label, box in self.boxes.items():
            box.enabled = state.reading
            if label in state.given:
                box.currentIndex = SCORE_CHOICES.index(state.given[label]) + 1
        self.ui.nextCaseButton.enabled, self.ui.finishReadingButton.enabled = state.can_advance, state.can_finish
        self.ui.readerStatusLabel.text = (
            _("Scores saved: {count} of {total}").format(count=len(state.given), total=len(STUDY_METHODS))
            if state.reading
            else ""
        )
        if state.can_finish:
            self.ui.caseLabel.text = (
                _("{case}: {remaining} of {count} cases left to score").format(
                    case=state.case, remaining=state.remaining, count=state.total
                )
                if state.reading
                else _("All {count} cases scored. Finish to see the summary.").format(count=state.total)
            )

    def close(self) -> None:
        """Close the study and leave the reader layout (when the section or the scene closes)."""
        self.session.close()
        if self.layout is not None:
            self.layout.exit()
            self.layout = None
        self.update()
