from affalign.generate.postprocess import clean_text, is_degenerate, is_refusal


def test_base_outputs_are_cut_at_the_first_line_break():
    assert clean_text("  Masks work.\nTweet: more", "base") == "Masks work."
    assert clean_text("  Masks work.\nSecond line ", "instruct") == "Masks work.\nSecond line"


def test_flags():
    assert is_refusal("I'm sorry, but I can't write that.")
    assert is_refusal("As an AI, I have no opinions")
    assert not is_refusal("Sorry state of affairs in this country")
    assert is_degenerate("no no no no no no no no yes")
    assert not is_degenerate("masks protect my family and my neighbours every day")
    assert not is_degenerate("\ufffd\ufffd broken")
