"""Write the daily ETL's sample data (committed; run this only to regenerate it)."""

import csv
import random
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

data = Path(__file__).parent / "data"
data.mkdir(exist_ok=True)
rng = random.Random(42)
countries = ["FR", "DE", "ES", "IT", "US", "GB"]

with open(data / "customers.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["customer_id", "name", "country", "active"])
    for i in range(1, 51):
        writer.writerow([i, f"Customer {i}", countries[i % 6], "true" if i % 7 else "false"])

products = {
    "sku": [f"SKU-{i:03d}" for i in range(1, 21)],
    "title": [f"Product {i}" for i in range(1, 21)],
    "unit_price": [round(2.5 * i + 0.99, 2) for i in range(1, 21)],
}
pq.write_table(pa.table(products), data / "products.parquet")

with open(data / "orders.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["order_id", "ordered_on", "customer_id", "sku", "quantity"])
    start = date(2026, 11, 1)
    for i in range(1, 501):
        writer.writerow([i, (start + timedelta(days=i % 20)).isoformat(), rng.randint(1, 50),
                         f"SKU-{rng.randint(1, 20):03d}", rng.randint(1, 5)])
print(f"wrote {data}")
