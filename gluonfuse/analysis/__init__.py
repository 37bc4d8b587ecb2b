"""The ensemble view of a trained network: its sub-networks, evaluated one by one (``gluonfuse analyze``).

Zhao et al. ("On the Connection of Deep Fusion to Ensembling", arXiv 1611.07718) read a deeply-fused
net as an ensemble of shallower networks that share weights, and claim that the deepest component is
not the strongest contributor. Veit et al. ("Residual Networks Behave Like Ensembles of Relatively
Shallow Networks", NIPS 2016) read a ResNet the same way and test it with a lesion study: residual
modules are deleted from the trained network at test time and the error is measured. The authors of
the fusion papers never released their analysis; this package makes it for any trained run whose
network declares sub-networks (:mod:`gluonfuse.models.views`).

* :mod:`~gluonfuse.analysis.paths`: path-length distributions;
* :mod:`~gluonfuse.analysis.components`: members, columns and lesion sets, and the evaluation of
  each (:func:`analyze_run`);
* :mod:`~gluonfuse.analysis.report`: tables (aligned, Markdown, CSV, JSON), files and the plot.
"""
from gluonfuse.analysis.components import analysis_kind, analyze_run, components  # noqa: F401
from gluonfuse.analysis.report import FORMATS, format_analysis, plot_analysis, write_outputs  # noqa: F401
