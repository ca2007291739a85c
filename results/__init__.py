"""results stage of the suite: paper-style tables and plots from trial records.

``records`` (schema, read/write), ``collect`` (find + read, skip unusable), ``tables`` (pandas grouping,
means, gaps, marks), ``paper`` (published numbers), ``render_md``/``render_tex``/``render_html``/``render``
(formats), ``plots`` (bar charts, training curves), ``cli`` (``python -m results``). See results/README.md.
"""
