"""One interface for every AI model: hosted LLMs and local models, behind capability-typed
requests, a priced catalog and a registry fed by the ``podium.models`` entry-point group."""
