"""The report's sections, one module each; every section is ``render(ctx: ReportContext) -> str``."""
