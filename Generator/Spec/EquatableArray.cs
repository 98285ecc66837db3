using System;
using System.Collections;
using System.Collections.Generic;
using System.Collections.Immutable;

namespace GemmaGen.Specs
{
    /// <summary>An immutable array compared by value, so records that hold one stay value-equatable
    /// (the incremental generator caches on that equality).</summary>
#if GEMMAGEN_RUNTIME
    public
#else
    internal
#endif
    readonly struct EquatableArray<T> : IEquatable<EquatableArray<T>>, IReadOnlyList<T>
        where T : IEquatable<T>
    {
        private readonly ImmutableArray<T> _items;

        public EquatableArray(ImmutableArray<T> items) => _items = items;

        public static EquatableArray<T> Create(params T[] items) => new EquatableArray<T>(ImmutableArray.Create(items));

        public ImmutableArray<T> AsImmutableArray() => _items.IsDefault ? ImmutableArray<T>.Empty : _items;

        public int Count => _items.IsDefault ? 0 : _items.Length;

        public T this[int index] => _items[index];

        public bool Equals(EquatableArray<T> other)
        {
            if (Count != other.Count) return false;
            for (int i = 0; i < Count; i++)
            {
                if (!_items[i].Equals(other._items[i])) return false;
            }
            return true;
        }

        public override bool Equals(object? obj) => obj is EquatableArray<T> other && Equals(other);

        public override int GetHashCode()
        {
            unchecked
            {
                int hash = 17;
                for (int i = 0; i < Count; i++) hash = hash * 31 + _items[i].GetHashCode();
                return hash;
            }
        }

        public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)AsImmutableArray()).GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString() => "[" + string.Join(", ", AsImmutableArray()) + "]";

        public static bool operator ==(EquatableArray<T> left, EquatableArray<T> right) => left.Equals(right);

        public static bool operator !=(EquatableArray<T> left, EquatableArray<T> right) => !left.Equals(right);
    }
}
