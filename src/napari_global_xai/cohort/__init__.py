"""The cohort explorer's core: a study table of an explain run, a safe row filter, and a cohort's global maps from
the stored image-wise maps beside a reference (issue #23). Qt-free and torch-free at import.

* :mod:`.table`: the study table (metadata, truth, probability, prediction and outcome per label);
* :mod:`.where`: the row filter (``outcome == 'FP' and age >= 60``), parsed with :mod:`ast`, never executed;
* :mod:`.pipeline`: the job's door :func:`~.pipeline.run_cohort` and the blockwise reduction;
* :mod:`.result`: :class:`~.result.CohortResult` and its folder (``write`` / :func:`~.result.open_cohort`);
* :mod:`.drawing`: the figure; :mod:`.report`: its report section.
"""
