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

        /// <summary>Wraps <paramref name="items"/> (a default array counts as empty).</summary>
        public EquatableArray(ImmutableArray<T> items) => _items = items;

        /// <summary>An array of <paramref name="items"/>.</summary>
        public static EquatableArray<T> Create(params T[] items) => new EquatableArray<T>(ImmutableArray.Create(items));

        /// <summary>The items: empty, never default, when there are none.</summary>
        public ImmutableArray<T> AsImmutableArray() => _items.IsDefault ? ImmutableArray<T>.Empty : _items;

        /// <summary>The number of items.</summary>
        public int Count => _items.IsDefault ? 0 : _items.Length;

        /// <summary>The item at <paramref name="index"/>.</summary>
        public T this[int index] => _items[index];

        /// <summary>Whether both hold equal items in the same order.</summary>
        public bool Equals(EquatableArray<T> other)
        {
            if (Count != other.Count) return false;
            for (int i = 0; i < Count; i++)
            {
                if (!_items[i].Equals(other._items[i])) return false;
            }
            return true;
        }

        /// <summary>Whether <paramref name="obj"/> is an array of equal items in the same order.</summary>
        public override bool Equals(object? obj) => obj is EquatableArray<T> other && Equals(other);

        /// <summary>A hash of the items, in order.</summary>
        public override int GetHashCode()
        {
            unchecked
            {
                int hash = 17;
                for (int i = 0; i < Count; i++) hash = hash * 31 + _items[i].GetHashCode();
                return hash;
            }
        }

        /// <summary>Enumerates the items in order.</summary>
        public IEnumerator<T> GetEnumerator() => ((IEnumerable<T>)AsImmutableArray()).GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        /// <summary>The items as <c>[a, b, c]</c>.</summary>
        public override string ToString() => "[" + string.Join(", ", AsImmutableArray()) + "]";

        /// <summary>Whether both hold equal items in the same order.</summary>
        public static bool operator ==(EquatableArray<T> left, EquatableArray<T> right) => left.Equals(right);

        /// <summary>Whether the items differ.</summary>
        public static bool operator !=(EquatableArray<T> left, EquatableArray<T> right) => !left.Equals(right);
    }
}
