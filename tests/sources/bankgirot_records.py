"""Build 80-character Bankgirot records by position, straight from the layouts in
reference/payments.md (1-based, inclusive positions), so tests do not depend on our writer."""

from __future__ import annotations


def record(tk: str, *fields: tuple[int, str]) -> str:
    """``record("82", (3, "20261128"), (16, "0000000000100001"))``: each value at its start."""
    line = [" "] * 80
    line[0:2] = tk
    for start, value in fields:
        line[start - 1 : start - 1 + len(value)] = value
    text = "".join(line)
    assert len(text) == 80, text
    return text


def lines(*records: str, ending: str = "\r\n") -> bytes:
    return (ending.join(records) + ending).encode("latin-1")


# -- Autogiro payment specification, new layout (§1.3) ----------------------------------------


def ag_opening(content: str = "BET. SPEC & STOPP TK", stamp: str = "20261128060000000000"):
    return record(
        "01", (3, "AUTOGIRO"), (25, stamp), (45, content), (65, "471117"), (71, "0009912346")
    )


def ag_section(tk: str, date: str, amount: int, count: int, serial: str = "00001") -> str:
    return record(
        tk, (3, "0" * 35), (38, date), (46, serial), (51, f"{amount:018d}"), (72, f"{count:08d}")
    )


def ag_payment(
    tk: str, date: str, payer: str, amount: int, status: str = "0", reference: str = "MEDLEMSAVGIFT"
) -> str:
    return record(
        tk,
        (3, date),
        (11, "0"),
        (16, f"{payer:>016}".replace(" ", "0")),
        (32, f"{amount:012d}"),
        (44, "0009912346"),
        (54, reference),
        (80, status),
    )


def ag_refund(date: str, payer: str, amount: int, refund_date: str, reason: str) -> str:
    return record(
        "77",
        (3, date),
        (11, "0"),
        (16, f"{payer:>016}".replace(" ", "0")),
        (32, f"{amount:012d}"),
        (44, "0009912346"),
        (54, "MEDLEMSAVGIFT"),
        (70, refund_date),
        (78, reason),
    )


def ag_closing(
    date: str,
    deposits: int,
    collections: int,
    withdrawals: int = 0,
    payouts: int = 0,
    refund_sections: int = 0,
    refunds: int = 0,
) -> str:
    return record(
        "09",
        (3, date),
        (11, "9900"),
        (15, f"{deposits:06d}"),
        (21, f"{collections:012d}"),
        (33, f"{withdrawals:06d}"),
        (39, f"{payouts:012d}"),
        (51, f"{refund_sections:06d}"),
        (57, f"{refunds:012d}"),
    )


# -- BgMax (§2) -------------------------------------------------------------------------------


def bg_start() -> str:
    return record("01", (3, "BGMAX"), (23, "01"), (25, "20261127180000000000"), (45, "P"))


def bg_opening(currency: str = "SEK") -> str:
    return record("05", (3, "0009912346"), (23, currency))


def bg_payment(
    reference: str,
    amount: int,
    ref_code: str = "2",
    serial: str = "000000000001",
    tk: str = "20",
    deduction_code: str = " ",
) -> str:
    return record(
        tk,
        (3, "0" * 10),
        (13, f"{reference:>25}"),
        (38, f"{amount:018d}"),
        (56, ref_code),
        (57, "1"),
        (58, serial),
        (70, "0"),
        (71, deduction_code),
    )


def bg_deposit(
    amount: int, count: int, date: str = "20261127", serial: str = "00042", currency: str = "SEK"
) -> str:
    return record(
        "15",
        (3, "0" * 35),
        (38, date),
        (46, serial),
        (51, f"{amount:018d}"),
        (69, currency),
        (72, f"{count:08d}"),
    )


def bg_end(payments: int, deductions: int = 0, extra: int = 0, deposits: int = 1) -> str:
    return record(
        "70",
        (3, f"{payments:08d}"),
        (11, f"{deductions:08d}"),
        (19, f"{extra:08d}"),
        (27, f"{deposits:08d}"),
    )
