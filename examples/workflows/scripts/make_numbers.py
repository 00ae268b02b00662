# Makes context["count"] numbers: 1, 2, 3, ...
count = int(context.get("count", 3))
result = {"numbers": list(range(1, count + 1))}
print(f"made {count} numbers")
