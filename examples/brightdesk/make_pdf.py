"""Generate docs/billing/refund-policy.pdf for the Brightdesk example help centre.

The page text lives in this script, so the PDF can be rebuilt at any time:

    .venv/bin/python examples/brightdesk/make_pdf.py

The output is deterministic: the creation date is fixed and only the core
Helvetica font is used (no embedded fonts), so the text stays extractable.
"""

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

OUT = Path(__file__).resolve().parent / "docs" / "billing" / "refund-policy.pdf"

TITLE = "Refund policy"

# Each block is (kind, text). kind is one of: "h2", "p", "bullet", "step".
BLOCKS = [
    (
        "p",
        "This policy explains when Brightdesk refunds a payment and how to "
        "ask for one. It applies to the Starter and Team plans bought online. "
        "Enterprise refunds follow the terms of your Enterprise contract. The "
        "14-day free trial is never charged, so there is nothing to refund.",
    ),
    ("h2", "Annual plans"),
    (
        "bullet",
        "You get a full refund if you cancel within 30 days of the initial "
        "purchase or within 30 days of an annual renewal.",
    ),
    (
        "bullet",
        "After those 30 days there is no refund, but your workspace keeps "
        "working until the end of the paid term.",
    ),
    (
        "bullet",
        "Prorated charges for seats added during the year can be refunded "
        "if you ask within 30 days of the charge.",
    ),
    (
        "bullet",
        "When a full refund is issued, the subscription ends on the day of "
        "the refund, the workspace becomes read-only, and your data is "
        "kept for 60 days before it is permanently deleted.",
    ),
    ("h2", "Monthly plans"),
    (
        "bullet",
        "Monthly plans are not refunded for partial months. You can cancel "
        "at any time, and the cancellation takes effect at the end of the "
        "current billing period.",
    ),
    (
        "bullet",
        "Downgrades, for example from Team ($29 per agent per month) to "
        "Starter ($12 per agent per month), take effect at the end of the "
        "current billing period. The difference is not refunded.",
    ),
    (
        "bullet",
        "Removing seats takes effect at the next renewal. There is no "
        "partial refund for unused seats.",
    ),
    ("h2", "Billing errors and service credits"),
    (
        "p",
        "Duplicate charges, and charges made after a confirmed cancellation, "
        "are refunded in full on any plan if you report them within 90 days "
        "of the charge. Uptime SLA credits for Enterprise customers are "
        "applied to the next invoice as service credits and are never paid "
        "out as cash.",
    ),
    ("h2", "How to request a refund"),
    (
        "step",
        "The Owner goes to Admin > Billing > Request refund, or emails "
        "billing@brightdesk.example with the invoice number (format "
        "INV-YYYY-NNNNNN, for example INV-2026-004512).",
    ),
    ("step", "The billing team replies with a decision within 2 business days."),
    (
        "step",
        "Approved refunds are paid to the original payment method and "
        "appear within 5 to 10 business days. Taxes are refunded in the "
        "same proportion as the plan price.",
    ),
]


def build(path: Path = OUT) -> Path:
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime(2026, 1, 1, tzinfo=UTC))
    pdf.set_title("Brightdesk Help Centre - Refund policy")
    pdf.set_author("Brightdesk Inc.")
    pdf.set_subject("Billing")
    pdf.set_creator("examples/brightdesk/make_pdf.py")
    pdf.set_margins(20, 20, 20)
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()

    width = pdf.w - pdf.l_margin - pdf.r_margin

    # Title: bold, larger.
    pdf.set_font("Helvetica", style="B", size=20)
    pdf.multi_cell(width, 10, TITLE, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    step_no = 0
    for kind, text in BLOCKS:
        if kind == "h2":
            step_no = 0
            pdf.ln(3)
            pdf.set_font("Helvetica", style="B", size=14)
            pdf.multi_cell(width, 8, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
            continue

        pdf.set_font("Helvetica", size=11)
        if kind == "p":
            pdf.multi_cell(width, 6, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        elif kind in ("bullet", "step"):
            if kind == "step":
                step_no += 1
                marker = f"{step_no}."
            else:
                marker = "-"
            indent = 7
            pdf.cell(indent, 6, marker)
            pdf.multi_cell(width - indent, 6, text, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1)
        else:
            raise ValueError(f"unknown block kind: {kind}")

    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    return path


if __name__ == "__main__":
    out = build()
    print(f"wrote {out} ({out.stat().st_size} bytes)")
