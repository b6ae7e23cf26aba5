"""Model sheet: placeholder until the step formula columns land."""
NAME = "Model"


def wanted(data) -> bool:
    return False


def write(book, ws, data, layout):
    raise NotImplementedError

