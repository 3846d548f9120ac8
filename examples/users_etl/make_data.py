"""Write data/users.xlsx: 40 sign-ups, some with bad emails, duplicates, unknown countries.

Run it to regenerate the sample (it is committed, so you need not)."""

from pathlib import Path

import xlsxwriter

ROWS = []
countries = ["FR", "DE", "ES", "IT", "US", "GB"]
for i in range(1, 41):
    email = f"user{i}@example.com"
    if i % 9 == 0:
        email = f"user{i}-at-example.com"  # invalid
    if i % 13 == 0:
        email = None  # missing
    if i in (20, 21):
        email = "shared@example.com"  # duplicate: the later row wins
    country = countries[i % len(countries)] if i % 17 else "XX"
    ROWS.append((i, f"User {i}", email, country, 18 + i % 50))

path = Path(__file__).parent / "data" / "users.xlsx"
path.parent.mkdir(exist_ok=True)
workbook = xlsxwriter.Workbook(str(path))
sheet = workbook.add_worksheet("users")
for col, name in enumerate(["id", "name", "email", "country", "age"]):
    sheet.write(0, col, name)
for row, values in enumerate(ROWS, start=1):
    for col, value in enumerate(values):
        if value is not None:
            sheet.write(row, col, value)
workbook.close()
print(f"wrote {path}")
