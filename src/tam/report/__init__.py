"""The `tam demo` report: a document of sections (paragraphs, tables, figures) written as markdown and as one
self-contained HTML page (inline CSS, PNG figures embedded as base64). `build.write_report` assembles it."""
