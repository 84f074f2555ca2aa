from anemoned.logs import format_fields


def test_fields_stay_on_one_line_and_quote_what_needs_it():
    text = format_fields({"dest": "my dest", "user": "bob", "error": 'a "b"\nc=d', "skip": None})
    assert "\n" not in text
    assert text.startswith('dest="my dest" user=bob error=')
    assert "skip" not in text
