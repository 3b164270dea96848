"""Step functions of examples/hello.yaml."""


async def greet(name: str) -> str:
    return f"Hello, {name}!"


def measure(text: str) -> int:
    return len(text)


async def shout(text: str) -> str:
    return text.upper()
