"""Views of a saved trace: terminal text (rich), Graphviz diagrams, the token-layout picture
(Pillow) and a self-contained HTML report.

Every renderer takes a :class:`tracer.schema.Trace` and returns text or bytes; none imports
torch or SAT (a test imports each module in a fresh interpreter and checks), so a trace
renders on any machine. One module per view:

==================  ===========================================================
``calls``           construction call tree (``cogtrace render --format tree``)
``modules``         module tree with shapes and parameter counts, folded
``hooks``           SAT hook tables and how add_mixin/del_mixin changed them
``steps``           generation steps (context forward, cached steps)
``tokens``          token layout strip with the three masks (text and PNG)
``architecture``    the facts of CogVLM's data flow, read off the trace
``diagrams``        DOT for the call graph, module tree and architecture; SVG/PNG
``report``          the HTML report with all of the above (``report.html``)
``explorer``        that report as an interactive page, and ``cogtrace diff``'s two-column page
``diffview``        ``cogtrace diff`` as text tables
``fonts``           fonts for the Pillow pictures, a CJK one for Chinese prompts
==================  ===========================================================

Submodules are imported on use, so ``import tracer.render`` is cheap.
"""

__all__ = ["architecture", "calls", "common", "diagrams", "diffview", "explorer", "fonts", "hooks", "modules",
           "report", "steps", "terminal", "tokens"]
